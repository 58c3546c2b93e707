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
