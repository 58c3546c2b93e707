//! The Authorizer: static tokens and JWTs side by side, and errors that never echo a token.

use tidings_proto::{Pattern, Selector, Topic};

use super::*;

fn pats(p: &[&str]) -> Vec<Pattern> {
    p.iter().map(|s| Pattern::parse(s).unwrap()).collect()
}

fn authorizer() -> Authorizer {
    Authorizer::new(vec![StaticToken {
        secret: Secret::new("s3cret"),
        grant: Grant {
            name: "dl".into(),
            publish: pats(&["downloads/*"]),
            subscribe: pats(&["downloads/*", "system"]),
            admin: false,
        },
    }])
}

#[test]
fn tokens_map_to_grants() {
    let a = authorizer();
    assert_eq!(a.authenticate(None), Err(AuthError::Missing));
    assert_eq!(a.authenticate(Some("s3cre")), Err(AuthError::Invalid));
    let g = a.authenticate(Some("s3cret")).unwrap();
    assert!(g.may_publish(&Topic::new("downloads/a").unwrap()));
    assert!(!g.may_publish(&Topic::new("system").unwrap()));
    let sel = |p: &[&str]| Selector {
        patterns: pats(p),
        types: vec![],
    };
    assert!(
        g.check_subscribe(&sel(&["downloads/a", "downloads/x/*", "system"]))
            .is_ok()
    );
    assert_eq!(
        g.check_subscribe(&sel(&["downloads/a", "*"])),
        Err(&Pattern::All)
    );
}

#[test]
fn no_tokens_means_anonymous_with_every_right() {
    let a = Authorizer::new(vec![]);
    assert!(a.is_open());
    assert!(
        a.authenticate(None)
            .unwrap()
            .may_publish(&Topic::new("x").unwrap())
    );
}

#[test]
fn static_tokens_and_jwts_work_side_by_side() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let jwt = JwtVerifier::new(vec![JwtKey::hs256(secret).unwrap()], JwtRules::default()).unwrap();
    // A static token shaped like a JWT is still found in the static table first.
    let jwt_shaped = "eyJhbGciOiJub25lIn0.eyJ9.static";
    let a = Authorizer::new(vec![
        StaticToken {
            secret: Secret::new("plain-static-token"),
            grant: Grant::everything("plain"),
        },
        StaticToken {
            secret: Secret::new(jwt_shaped),
            grant: Grant::everything("shaped"),
        },
    ])
    .with_jwt(Some(jwt));
    assert!(!a.is_open());
    assert_eq!(
        a.authenticate(Some("plain-static-token")).unwrap().name,
        "plain"
    );
    assert_eq!(a.authenticate(Some(jwt_shaped)).unwrap().name, "shaped");
    let minted = SigningKey::hs256(secret)
        .unwrap()
        .mint(
            &TokenSpec {
                subscribe: vec!["a/*".into()],
                sub: Some("u1".into()),
                ttl: std::time::Duration::from_secs(60),
                ..TokenSpec::default()
            },
            jsonwebtoken::get_current_timestamp(),
        )
        .unwrap();
    let g = a.authenticate(Some(&minted)).unwrap();
    assert_eq!(g.name, "jwt:u1");
    assert_eq!(g.subscribe, pats(&["a/*"]));
    // Not JWT-shaped and not static: plainly invalid. JWT-shaped and wrong: the reason.
    assert_eq!(a.authenticate(Some("nope")), Err(AuthError::Invalid));
    let mut forged = minted.clone();
    forged.push('A');
    assert_eq!(
        a.authenticate(Some(&forged)),
        Err(AuthError::Jwt(JwtError::BadSignature))
    );
    // Only JWTs: still not open, and a missing token is missing.
    let only_jwt = Authorizer::new(vec![]).with_jwt(Some(
        JwtVerifier::new(vec![JwtKey::hs256(secret).unwrap()], JwtRules::default()).unwrap(),
    ));
    assert!(!only_jwt.is_open());
    assert_eq!(only_jwt.authenticate(None), Err(AuthError::Missing));
}

#[test]
fn errors_never_echo_the_token() {
    let a = authorizer();
    let e = a.authenticate(Some("s3cret-wrong")).unwrap_err();
    assert!(!e.to_string().contains("s3cret"));
    assert!(!format!("{e:?}").contains("s3cret"));
}

#[test]
fn each_token_has_its_own_stable_id_that_is_not_its_digest() {
    let token = |secret: &str, name: &str| StaticToken {
        secret: secret.into(),
        grant: Grant::everything(name),
    };
    let a = Authorizer::new(vec![
        token("secret-one", "same"),
        token("secret-two", "same"),
    ]);
    let one = a.identify(Some("secret-one")).unwrap().id;
    let two = a.identify(Some("secret-two")).unwrap().id;
    assert_ne!(one, two, "same name, different tokens: different ids");
    assert_ne!(one, CredentialId::ANONYMOUS);
    assert_ne!(one.0, digest("secret-one"));
    // Reordered, and with another token added: the same token keeps its id.
    let b = Authorizer::new(vec![
        token("secret-three", "x"),
        token("secret-two", "y"),
        token("secret-one", "z"),
    ]);
    assert_eq!(b.identify(Some("secret-one")).unwrap().id, one);
    assert_eq!(format!("{one:?}"), "CredentialId(..)");
    assert_eq!(
        Authorizer::new(vec![]).identify(None).unwrap().id,
        CredentialId::ANONYMOUS
    );
}

/// A JWT's id follows its issuer and subject, so a refreshed token is the same credential for
/// per-credential limits; without a subject it is the token itself. Its expiry is its `exp`.
#[test]
fn a_jwt_is_identified_by_issuer_and_subject_and_carries_its_expiry() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let a = Authorizer::new(vec![]).with_jwt(Some(
        JwtVerifier::new(vec![JwtKey::hs256(secret).unwrap()], JwtRules::default()).unwrap(),
    ));
    let now = jsonwebtoken::get_current_timestamp();
    let mint = |sub: Option<&str>, iss: Option<&str>, ttl: u64| {
        SigningKey::hs256(secret)
            .unwrap()
            .mint(
                &TokenSpec {
                    sub: sub.map(str::to_owned),
                    iss: iss.map(str::to_owned),
                    ttl: std::time::Duration::from_secs(ttl),
                    ..TokenSpec::default()
                },
                now,
            )
            .unwrap()
    };
    let id = |t: &str| a.identify(Some(t)).unwrap().id;
    let first = mint(Some("alice"), Some("ops"), 60);
    let refreshed = mint(Some("alice"), Some("ops"), 120);
    assert_ne!(first, refreshed);
    assert_eq!(id(&first), id(&refreshed));
    assert_ne!(id(&first), id(&mint(Some("bob"), Some("ops"), 60)));
    assert_ne!(id(&first), id(&mint(Some("alice"), Some("other"), 60)));
    assert_ne!(id(&first), id(&mint(Some("alice"), None, 60)));
    let anonymous_a = mint(None, None, 60);
    let anonymous_b = mint(None, None, 61);
    assert_ne!(id(&anonymous_a), id(&anonymous_b));
    assert_ne!(id(&anonymous_a), CredentialId::ANONYMOUS);
    assert_eq!(a.identify(Some(&first)).unwrap().expires_at, Some(now + 60));
}
