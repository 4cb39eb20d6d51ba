//! [`ScalekitClientBuilder::doctor`]: a setup check, per transport, with the user's own
//! credentials: access token, create a short-lived key, validate it, invalidate it, see it
//! refused.

use std::fmt;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::{ScalekitClient, ScalekitClientBuilder, ScalekitError, Transport};
use crate::keys::CreateToken;

/// How long the doctor's key would live if its invalidation failed.
const DOCTOR_KEY_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// What [`ScalekitClientBuilder::doctor`] found, one [`TransportReport`] per transport.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DoctorReport {
    /// REST first, then gRPC.
    pub transports: Vec<TransportReport>,
}

impl DoctorReport {
    /// The transports on which every step worked.
    pub fn working(&self) -> Vec<Transport> {
        self.transports
            .iter()
            .filter(|t| t.is_ok())
            .map(|t| t.transport)
            .collect()
    }
}

/// The steps run over one transport.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportReport {
    /// The transport.
    pub transport: Transport,
    /// In order; the run stops at the first failure (later steps are absent).
    pub steps: Vec<DoctorStep>,
    /// Set when the transport could not even be configured (for example `grpc` without the
    /// crate feature).
    pub setup_error: Option<String>,
}

impl TransportReport {
    /// Every step ran and worked.
    pub fn is_ok(&self) -> bool {
        self.setup_error.is_none()
            && self.steps.len() == STEPS
            && self.steps.iter().all(|s| s.error.is_none())
    }
}

const STEPS: usize = 5;

/// One step of the check.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DoctorStep {
    /// `access token`, `create`, `validate`, `invalidate`, `refused after invalidate`.
    pub name: &'static str,
    /// `None` when it worked; the error otherwise (never holds a key or secret).
    pub error: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for report in &self.transports {
            let verdict = if report.is_ok() { "works" } else { "FAILS" };
            writeln!(f, "{}: {verdict}", report.transport)?;
            if let Some(error) = &report.setup_error {
                writeln!(f, "  setup: {error}")?;
            }
            for step in &report.steps {
                match &step.error {
                    None => writeln!(f, "  ok    {:<26} {:?}", step.name, step.elapsed)?,
                    Some(error) => writeln!(f, "  FAIL  {:<26} {error}", step.name)?,
                }
            }
        }
        Ok(())
    }
}

impl ScalekitClientBuilder {
    /// Checks this configuration against Scalekit over every transport: fetches an access
    /// token, creates a key in `organization_id` (expiring in 10 minutes, described
    /// `axum-api-key doctor`), validates it, invalidates it and checks it is refused. A user
    /// learns on day one whether REST, gRPC or both reach their environment.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use axum_api_key::testing::FakeScalekit;
    ///
    /// let fake = FakeScalekit::builder().tls(true).start().await.unwrap();
    /// let report = fake.client_builder().doctor("org_1").await;
    /// print!("{report}");
    /// assert_eq!(report.working().len(), 2); // REST and gRPC
    /// # }
    /// ```
    pub async fn doctor(self, organization_id: &str) -> DoctorReport {
        let mut transports = Vec::new();
        for transport in [Transport::Rest, Transport::Grpc] {
            let builder = self.clone().transport(transport);
            transports.push(match builder.build() {
                Ok(client) => TransportReport {
                    transport,
                    steps: run(&client, organization_id).await,
                    setup_error: None,
                },
                Err(error) => TransportReport {
                    transport,
                    steps: Vec::new(),
                    setup_error: Some(error.to_string()),
                },
            });
        }
        DoctorReport { transports }
    }
}

async fn run(client: &ScalekitClient, organization_id: &str) -> Vec<DoctorStep> {
    let mut steps = Vec::new();
    let mut step = |name, started: Instant, result: Result<(), ScalekitError>| {
        let ok = result.is_ok();
        steps.push(DoctorStep {
            name,
            error: result.err().map(|e| e.to_string()),
            elapsed: started.elapsed(),
        });
        ok
    };
    let started = Instant::now();
    let token = client.fetch_access_token(0).await.map(|_| ());
    if !step("access token", started, token) {
        return steps;
    }
    let started = Instant::now();
    let request = CreateToken::new(organization_id)
        .description("axum-api-key doctor")
        .expiry(OffsetDateTime::now_utc() + DOCTOR_KEY_LIFETIME);
    let created = client.create_token(request).await;
    let created = match created {
        Ok(created) => {
            step("create", started, Ok(()));
            created
        }
        Err(error) => {
            step("create", started, Err(error));
            return steps;
        }
    };
    let key = created.key.expose_secret();
    let started = Instant::now();
    let validated = client.validate_token(key).await.and_then(|info| {
        if info.token_id() == created.token_id {
            Ok(())
        } else {
            Err(ScalekitError::Decode(
                "validate named another token id".into(),
            ))
        }
    });
    if !step("validate", started, validated) {
        // Best effort: do not leave the key behind.
        let _ = client.invalidate_token(&created.token_id).await;
        return steps;
    }
    let started = Instant::now();
    if !step("invalidate", started, client.invalidate_token(key).await) {
        return steps;
    }
    let started = Instant::now();
    let refused = match client.validate_token(key).await {
        Err(ScalekitError::NotFound) => Ok(()),
        Err(error) => Err(error),
        Ok(_) => Err(ScalekitError::Decode(
            "the invalidated key still validates".into(),
        )),
    };
    step("refused after invalidate", started, refused);
    steps
}
