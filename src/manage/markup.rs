//! The page's markup: maud templates (every interpolation escaped), the layout with its
//! strict CSP nonce, the copy-button script and the style sheet.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::ops::KeyPage;
use super::{ManageError, Manager, ManagerSource, Refusal, Shared};
use crate::keys::KeyStore;
use crate::token_info::TokenInfo;

use super::page::{Flash, GRACES, home};

pub(super) fn page_body<S: KeyStore, M: ManagerSource>(
    app: &Shared<S, M>,
    manager: &Manager,
    base: &str,
    page: &KeyPage,
    flash: Option<&Flash<'_>>,
    nonce: &str,
) -> Markup {
    let csrf = manager.csrf_token().unwrap_or_default();
    let policy = &app.core.policy;
    html! {
        header {
            h1 { (app.title) }
            p.scope {
                "Organization " code { (manager.organization_id()) }
                @if let Some(user) = manager.user_id() { " · user " code { (user) } }
                " · " (if manager.is_admin() { "key administrator" } else { "your own keys" })
            }
        }
        main {
            @match flash {
                Some(Flash::NewKey(created, rotated)) => {
                    section.new-key aria-labelledby="new-key-title" {
                        h2 #new-key-title { "Your new key" }
                        p { "Copy it now: it is shown this once and cannot be retrieved later." }
                        @if let Some((old, grace)) = rotated {
                            p {
                                "It replaces " code { (old) } ", which "
                                @match grace {
                                    Some(at) => { "keeps working until " (when(Some(*at))) "." }
                                    None => { "is revoked." }
                                }
                            }
                        }
                        label for="new-key" { "New key ending in " (created.info.token_suffix().unwrap_or("")) }
                        div.copy-row {
                            input #new-key type="text" readonly autofocus spellcheck="false"
                                autocomplete="off" value=(created.key.expose_secret());
                            button #copy type="button" hidden { "Copy" }
                        }
                        script nonce=(nonce) { (PreEscaped(COPY_SCRIPT)) }
                    }
                }
                Some(Flash::Error(error)) => {
                    div.error role="alert" { strong { "Not done: " } (error.description()) }
                }
                None => {}
            }
            section aria-labelledby="create-title" {
                h2 #create-title { "Create a key" }
                form method="post" action={ (base) "/create" } {
                    input type="hidden" name="csrf_token" value=(csrf);
                    div.field {
                        label for="description" { "Description" }
                        input #description name="description" type="text" maxlength="255"
                            placeholder="e.g. CI deploy bot";
                    }
                    @if manager.is_admin() {
                        div.field {
                            label for="user_id" { "User id " span.hint { "(empty: an organization key)" } }
                            input #user_id name="user_id" type="text" maxlength="64";
                        }
                    }
                    div.field {
                        label for="expiry" { "Expires on " span.hint { "(UTC; empty: "
                            (policy.max_lifetime.map_or_else(|| "never".to_owned(), |d| format!("in {} days", d.as_secs() / 86_400))) ")" } }
                        input #expiry name="expiry" type="date";
                    }
                    @for name in &policy.allowed_claims {
                        div.field {
                            label for={ "claim-" (name) } { "Claim " code { (name) } span.hint { " (optional)" } }
                            input id={ "claim-" (name) } name={ "claim:" (name) } type="text" maxlength="256";
                        }
                    }
                    @if manager.is_admin() {
                        div.field.check {
                            input #admin name="admin" type="checkbox" value="yes";
                            label for="admin" { "Key administrator " span.hint { "(may manage every key of the organization)" } }
                        }
                    }
                    button #create type="submit" { "Create key" }
                }
            }
            section aria-labelledby="keys-title" {
                h2 #keys-title { "Active keys" }
                @if page.keys.is_empty() {
                    p { "No active keys." }
                } @else {
                    table {
                        caption.visually-hidden { "Active keys, newest first" }
                        thead { tr {
                            th scope="col" { "Description" }
                            th scope="col" { "Scope" }
                            th scope="col" { "Key" }
                            th scope="col" { "Created" }
                            th scope="col" { "Expires" }
                            th scope="col" { "Actions" }
                        } }
                        tbody {
                            @for key in &page.keys { (row(base, csrf, key, policy.max_grace)) }
                        }
                    }
                }
                @if page.truncated {
                    p.hint { "Only the first keys of a very large organization are listed." }
                }
                @if let Some(next) = &page.next_page_token {
                    p { a href={ (home(base)) "?page_token=" (next) } { "Older keys →" } }
                }
            }
        }
    }
}

fn row(base: &str, csrf: &str, key: &TokenInfo, max_grace: Duration) -> Markup {
    let suffix = key.token_suffix().unwrap_or("");
    let id = key.token_id();
    html! {
        tr {
            td { (key.description().unwrap_or("—")) }
            td {
                @match key.user_id() { Some(user) => { "user " code { (user) } } None => { "organization" } }
                @if key.claims().len() != 0 {
                    br;
                    span.hint {
                        @for (i, (name, value)) in key.claims().enumerate() {
                            @if i > 0 { ", " }
                            (name) "=" (value)
                        }
                    }
                }
            }
            td { code { "…" (suffix) } }
            td { (when(key.created_at())) }
            td {
                (when(key.effective_expiry()))
                @if key.revoke_after().is_some() { br; span.hint { "(rotated: grace)" } }
            }
            td.actions {
                details {
                    summary { "Rotate" }
                    form method="post" action={ (base) "/rotate/" (id) } {
                        input type="hidden" name="csrf_token" value=(csrf);
                        label for={ "grace-" (id) } { "Old key keeps working" }
                        select id={ "grace-" (id) } name="grace_seconds" {
                            @for (secs, label) in GRACES.iter().filter(|(s, _)| Duration::from_secs(*s) <= max_grace) {
                                option value=(secs) { (label) }
                            }
                        }
                        button type="submit" id={ "rotate-" (id) } { "Rotate key …" (suffix) }
                    }
                }
                details {
                    summary { "Revoke" }
                    form method="post" action={ (base) "/revoke/" (id) } {
                        input type="hidden" name="csrf_token" value=(csrf);
                        input type="hidden" name="confirm" value="yes";
                        p { "Revoking stops this key at once. This cannot be undone." }
                        button.danger type="submit" id={ "revoke-" (id) } { "Yes, revoke key …" (suffix) }
                    }
                }
            }
        }
    }
}

fn when(at: Option<OffsetDateTime>) -> String {
    match at {
        None => "never".to_owned(),
        Some(at) => at
            .format(format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .unwrap_or_else(|_| at.format(&Rfc3339).unwrap_or_default()),
    }
}

pub(super) fn confirm_page(
    title: &str,
    base: &str,
    manager: &Manager,
    info: &TokenInfo,
) -> Response {
    let nonce = nonce();
    let suffix = info.token_suffix().unwrap_or("");
    let body = html! {
        main {
            h1 { "Revoke key …" (suffix) "?" }
            p { "Revoking stops this key at once. This cannot be undone." }
            form method="post" action={ (base) "/revoke/" (info.token_id()) } {
                input type="hidden" name="csrf_token" value=(manager.csrf_token().unwrap_or_default());
                input type="hidden" name="confirm" value="yes";
                button.danger type="submit" autofocus { "Yes, revoke key …" (suffix) }
                " "
                a href=(home(base)) { "Cancel" }
            }
        }
    };
    html_response(StatusCode::OK, &nonce, layout(title, &nonce, body))
}

pub(super) fn refused(title: &str, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Manage(error) => error_page(title, &error),
        Refusal::Response(response) => response,
    }
}

pub(super) fn error_page(title: &str, error: &ManageError) -> Response {
    let nonce = nonce();
    let body = html! {
        main {
            h1 { (title) }
            div.error role="alert" {
                @match error {
                    ManageError::Unauthenticated => { "You are not signed in." }
                    other => { (other.description()) }
                }
            }
        }
    };
    html_response(error.status(), &nonce, layout(title, &nonce, body))
}

pub(super) fn layout(title: &str, nonce: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) }
                style nonce=(nonce) { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
}

pub(super) fn html_response(status: StatusCode, nonce: &str, markup: Markup) -> Response {
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(CONTENT_SECURITY_POLICY, csp);
    }
    response
}

pub(super) fn nonce() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

const COPY_SCRIPT: &str = r#"(function(){var b=document.getElementById('copy'),k=document.getElementById('new-key');if(!b||!k)return;b.hidden=false;k.focus();k.select();b.addEventListener('click',function(){k.select();var done=function(){b.textContent='Copied';};if(navigator.clipboard){navigator.clipboard.writeText(k.value).then(done,function(){document.execCommand('copy');done();});}else{document.execCommand('copy');done();}});})();"#;

const STYLE: &str = r#"
:root{color-scheme:light dark;--fg:#1d2330;--muted:#5b6475;--line:#d9dde5;--bg:#fff;--panel:#f5f7fa;--accent:#2454d6;--danger:#b42318}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ef;--muted:#a3abba;--line:#3a4150;--bg:#14171d;--panel:#1c2029;--accent:#7aa2ff;--danger:#ff6b5e}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:72rem;padding:1.5rem;font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
h1{margin:0 0 .25rem;font-size:1.6rem}h2{font-size:1.2rem;margin:0 0 .75rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.92em}
.scope,.hint{color:var(--muted)}.hint{font-size:.9em}
section{border:1px solid var(--line);border-radius:10px;padding:1rem 1.25rem;margin:1rem 0;background:var(--panel)}
.field{display:flex;flex-direction:column;gap:.25rem;margin:.6rem 0;max-width:32rem}
.field.check{flex-direction:row;align-items:center;gap:.5rem}
input[type=text],input[type=date],select{font:inherit;padding:.45rem .6rem;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg)}
button{font:inherit;padding:.45rem .9rem;border-radius:6px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
button.danger{background:var(--danger);border-color:var(--danger)}
:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
table{width:100%;border-collapse:collapse;background:var(--bg)}th,td{text-align:left;padding:.55rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.85rem;text-transform:uppercase;letter-spacing:.03em;color:var(--muted)}
details{margin:.15rem 0}summary{cursor:pointer;color:var(--accent)}details form{margin:.5rem 0;display:flex;flex-direction:column;gap:.4rem;max-width:18rem}
.new-key{border-color:var(--accent)}.copy-row{display:flex;gap:.5rem}.copy-row input{flex:1;font-family:ui-monospace,monospace}
.error{border:1px solid var(--danger);color:var(--danger);border-radius:8px;padding:.75rem 1rem;margin:1rem 0}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
"#;
