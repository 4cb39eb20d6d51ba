//! Unit tests of `throttle`.

use super::*;

fn ip(text: &str) -> ClientKey {
    ClientKey::ip(text.parse().unwrap())
}

#[test]
fn blocks_after_the_limit_and_spares_other_clients() {
    let throttle = FailedKeyThrottle::new("5/h".parse().unwrap());
    let bad = ip("203.0.113.7");
    for i in 0..5 {
        assert_eq!(throttle.check(&bad), Ok(()), "refusal {i}");
        throttle.record_refusal(&bad);
    }
    let wait = throttle.check(&bad).expect_err("sixth key throttled");
    // One refusal comes back every 12 minutes.
    assert!(wait.0 > Duration::from_secs(11 * 60) && wait.0 <= Duration::from_secs(721));
    assert_eq!(wait.seconds(), wait.0.as_secs() + 1);
    let other = ip("127.0.0.2");
    assert_eq!(throttle.check(&other), Ok(()));
    throttle.record_refusal(&other);
    assert_eq!(throttle.check(&other), Ok(()));
    let stats = throttle.stats();
    assert_eq!((stats.refusals, stats.throttled, stats.clients), (6, 1, 2));
}

#[test]
fn unblocks_when_a_refusal_comes_back() {
    let throttle = FailedKeyThrottle::new("2/s".parse().unwrap());
    let client = ip("192.0.2.1");
    throttle.record_refusal(&client);
    throttle.record_refusal(&client);
    assert!(throttle.check(&client).is_err());
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(throttle.check(&client), Ok(()));
    throttle.record_refusal(&client);
    assert!(throttle.check(&client).is_err());
}

#[test]
fn the_client_map_is_bounded() {
    let throttle = FailedKeyThrottle::new("1/h".parse().unwrap()).max_clients(100);
    for i in 0..5_000u32 {
        throttle.record_refusal(&ClientKey::ip(IpAddr::from(i.to_be_bytes())));
    }
    let stats = throttle.stats();
    assert!(stats.clients <= 100, "{stats:?}");
    assert!(stats.evicted_active > 0);
}

#[test]
fn ipv6_hosts_fold_to_their_slash_64() {
    assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:bbbb::9"));
    assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
    assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
}

#[test]
fn long_names_are_hashed() {
    let long = "x".repeat(1_000);
    let ClientKey::Named(name) = ClientKey::named(&long) else {
        panic!()
    };
    assert!(name.len() <= 65);
    assert_ne!(
        ClientKey::named(&long),
        ClientKey::named(&"y".repeat(1_000))
    );
    assert_eq!(
        ClientKey::named("tenant-1"),
        ClientKey::Named("tenant-1".into())
    );
}

fn headers(values: &[&str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append("x-forwarded-for", value.parse().unwrap());
    }
    headers
}

#[test]
fn forwarded_for_takes_the_nth_entry_from_the_right() {
    let h = headers(&["1.1.1.1, 2.2.2.2", "3.3.3.3,4.4.4.4"]);
    let pick = |n| forwarded_client(&h, n).map(|ip| ip.to_string());
    assert_eq!(pick(0), None);
    assert_eq!(pick(1).as_deref(), Some("4.4.4.4"));
    assert_eq!(pick(2).as_deref(), Some("3.3.3.3"));
    assert_eq!(pick(3).as_deref(), Some("2.2.2.2"));
    assert_eq!(pick(4).as_deref(), Some("1.1.1.1"));
    assert_eq!(pick(5), None);
}

#[test]
fn forwarded_for_accepts_ports_and_refuses_junk() {
    for (value, expected) in [
        ("192.0.2.1:4711", Some("192.0.2.1")),
        ("[2001:db8::1]:443", Some("2001:db8::1")),
        ("  2001:db8::2\t", Some("2001:db8::2")),
        ("unknown", None),
        ("", None),
        ("192.0.2.1 , ", None),
        ("_hidden", None),
    ] {
        let got = forwarded_client(&headers(&[value]), 1).map(|ip| ip.to_string());
        assert_eq!(got.as_deref(), expected, "{value:?}");
    }
}

#[test]
fn client_of_follows_the_source() {
    let mut extensions = Extensions::new();
    extensions.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 5000))));
    let h = headers(&["6.6.6.6, 203.0.113.9"]);
    let peer = FailedKeyThrottle::default();
    assert_eq!(peer.client_of(&h, &extensions), Some(ip("10.0.0.1")));
    let proxied = FailedKeyThrottle::default()
        .client_source(ClientSource::ForwardedFor { trusted_proxies: 1 });
    assert_eq!(proxied.client_of(&h, &extensions), Some(ip("203.0.113.9")));
    assert_eq!(
        proxied.client_of(&HeaderMap::new(), &extensions),
        Some(ip("10.0.0.1"))
    );
    let custom = FailedKeyThrottle::default().client_source(ClientSource::Custom(Arc::new(
        |headers: &HeaderMap, _: &Extensions| {
            headers
                .get("x-tenant")
                .and_then(|v| v.to_str().ok())
                .map(ClientKey::named)
        },
    )));
    assert_eq!(custom.client_of(&h, &extensions), None);
    assert_eq!(peer.client_of(&h, &Extensions::new()), None);
}
