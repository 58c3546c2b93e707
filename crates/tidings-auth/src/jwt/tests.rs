//! JWT verification for every algorithm and every refusal, key loading, JWKS by kid, minting.

use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{EncodingKey, Header, get_current_timestamp};
use serde_json::{Value, json};

use super::*;

const HS_SECRET: &[u8] = b"an-hs256-secret-of-32-bytes-at-least!";
const RSA_KEY: &str = include_str!("testdata/rsa.key");
const RSA_PUB: &str = include_str!("testdata/rsa.pub");
const P256_KEY: &str = include_str!("testdata/p256.key");
const P256_PUB: &str = include_str!("testdata/p256.pub");
const ED_KEY: &str = include_str!("testdata/ed25519.key");
const ED_PUB: &str = include_str!("testdata/ed25519.pub");
const P384_PUB: &str = include_str!("testdata/p384.pub");
const RSA1024_PUB: &str = include_str!("testdata/rsa1024.pub");

fn now() -> u64 {
    get_current_timestamp()
}

fn encoding(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::HS256 => EncodingKey::from_secret(HS_SECRET).unwrap(),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(P256_KEY.as_bytes()).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(ED_KEY.as_bytes()).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn key(alg: Algorithm) -> JwtKey {
    match alg {
        Algorithm::HS256 => JwtKey::hs256(HS_SECRET).unwrap(),
        Algorithm::RS256 => JwtKey::from_public_pem(RSA_PUB.as_bytes()).unwrap(),
        Algorithm::ES256 => JwtKey::from_public_pem(P256_PUB.as_bytes()).unwrap(),
        Algorithm::EdDSA => JwtKey::from_public_pem(ED_PUB.as_bytes()).unwrap(),
        other => panic!("{other:?}"),
    }
}

const ALGS: [Algorithm; 4] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

fn sign(alg: Algorithm, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &encoding(alg)).unwrap()
}

fn claims() -> Value {
    json!({
        "sub": "alice",
        "exp": now() + 600,
        "tidings": {"publish": ["a/*"], "subscribe": ["a/*", "b"], "admin": true},
    })
}

fn verifier(keys: Vec<JwtKey>, rules: JwtRules) -> JwtVerifier {
    JwtVerifier::new(keys, rules).unwrap()
}

fn all_keys() -> JwtVerifier {
    verifier(ALGS.iter().map(|a| key(*a)).collect(), rules())
}

fn rules() -> JwtRules {
    JwtRules {
        leeway: Duration::from_secs(30),
        ..JwtRules::default()
    }
}

fn pats(p: &[&str]) -> Vec<Pattern> {
    p.iter().map(|s| Pattern::parse(s).unwrap()).collect()
}

/// A token whose payload was replaced after signing.
fn tampered(token: &str, claims: &Value) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    parts[1] = &payload;
    parts.join(".")
}

#[test]
fn every_algorithm_verifies_with_its_key_and_gives_the_claimed_grant() {
    let v = all_keys();
    for alg in ALGS {
        let grant = v
            .verify(&sign(alg, &claims()))
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(grant.name, "jwt:alice");
        assert_eq!(grant.publish, pats(&["a/*"]), "{alg:?}");
        assert_eq!(grant.subscribe, pats(&["a/*", "b"]), "{alg:?}");
        assert!(grant.admin);
        assert_eq!(key(alg).algorithm(), alg_name(alg));
    }
}

#[test]
fn every_algorithm_refuses_a_changed_payload() {
    let v = all_keys();
    let mut wider = claims();
    wider["tidings"]["subscribe"] = json!(["*"]);
    for alg in ALGS {
        let token = tampered(&sign(alg, &claims()), &wider);
        assert_eq!(v.verify(&token), Err(JwtError::BadSignature), "{alg:?}");
    }
}

#[test]
fn a_token_is_verified_only_by_a_key_pinned_to_its_algorithm() {
    // Each key alone refuses the other three algorithms without trying them.
    for key_alg in ALGS {
        let v = verifier(vec![key(key_alg)], rules());
        for alg in ALGS.into_iter().filter(|a| *a != key_alg) {
            assert_eq!(
                v.verify(&sign(alg, &claims())),
                Err(JwtError::NoKey(alg_name(alg))),
                "{alg:?} token, {key_alg:?} key"
            );
        }
    }
}

#[test]
fn alg_none_is_refused() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}.c2ln"),
    ] {
        assert_eq!(
            all_keys().verify(&token),
            Err(JwtError::UnsupportedAlgorithm(Some("none".into())))
        );
    }
    // Other spellings and algorithms Tidings does not pin to a key.
    for alg in ["None", "NONE", "HS384", "RS512", "PS256"] {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}"}}"#));
        let token = format!("{header}.{payload}.c2ln");
        assert_eq!(
            all_keys().verify(&token),
            Err(JwtError::UnsupportedAlgorithm(Some(alg.into())))
        );
    }
    // An alg that is not a short name is not echoed.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"<script>alert(1)</script>"}"#);
    let e = all_keys()
        .verify(&format!("{header}.{payload}.c2ln"))
        .unwrap_err();
    assert_eq!(e, JwtError::UnsupportedAlgorithm(None));
    assert!(!e.to_string().contains("script"));
}

#[test]
fn hs_rs_confusion_is_refused() {
    // An HS256 token "signed" with the RSA public key PEM as the HMAC secret.
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(RSA_PUB.as_bytes()).unwrap(),
    )
    .unwrap();
    let rsa_only = verifier(vec![key(Algorithm::RS256)], rules());
    assert_eq!(rsa_only.verify(&confused), Err(JwtError::NoKey("HS256")));
    // With an HS256 secret configured too, the token is checked against that secret only.
    let both = verifier(vec![key(Algorithm::RS256), key(Algorithm::HS256)], rules());
    assert_eq!(both.verify(&confused), Err(JwtError::BadSignature));
    // And the same for a JWKS key (RSA) selected by kid.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let with_kid = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(RSA_PUB.as_bytes()).unwrap(),
    )
    .unwrap();
    let jwks = verifier(JwtKey::from_jwks(&jwks_json()).unwrap(), rules());
    assert_eq!(jwks.verify(&with_kid), Err(JwtError::NoKey("HS256")));
}

#[test]
fn time_claims_are_checked_with_the_leeway() {
    let v = all_keys();
    let with = |patch: Value| {
        let mut c = claims();
        for (k, val) in patch.as_object().unwrap() {
            c[k] = val.clone();
        }
        c
    };
    for alg in ALGS {
        let check = |c: &Value| v.verify(&sign(alg, c)).map(|_| ());
        assert_eq!(
            check(&with(json!({"exp": now() - 120}))),
            Err(JwtError::Expired)
        );
        assert_eq!(check(&with(json!({"exp": now() - 5}))), Ok(()), "leeway");
        assert_eq!(
            check(&with(json!({"nbf": now() + 120}))),
            Err(JwtError::NotYetValid)
        );
        assert_eq!(check(&with(json!({"nbf": now() + 5}))), Ok(()), "leeway");
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(&no_exp), Err(JwtError::MissingClaim("exp".into())));
        // An `exp` that is not a number is no `exp`.
        assert_eq!(
            check(&with(json!({"exp": "tomorrow"}))),
            Err(JwtError::MissingClaim("exp".into()))
        );
    }
    let strict = verifier(vec![key(Algorithm::HS256)], JwtRules::default());
    assert_eq!(
        strict
            .verify(&sign(Algorithm::HS256, &with(json!({"exp": now() - 5}))))
            .map(|_| ()),
        Err(JwtError::Expired),
        "no leeway"
    );
}

#[test]
fn audience_and_issuer_are_required_when_configured() {
    let v = verifier(
        vec![key(Algorithm::ES256)],
        JwtRules {
            audience: vec!["tidings".into()],
            issuer: vec!["https://idp.example".into()],
            ..rules()
        },
    );
    let check = |aud: Option<Value>, iss: Option<&str>| {
        let mut c = claims();
        if let Some(a) = aud {
            c["aud"] = a;
        }
        if let Some(i) = iss {
            c["iss"] = json!(i);
        }
        v.verify(&sign(Algorithm::ES256, &c)).map(|_| ())
    };
    let iss = Some("https://idp.example");
    assert_eq!(check(Some(json!("tidings")), iss), Ok(()));
    assert_eq!(check(Some(json!(["other", "tidings"])), iss), Ok(()));
    assert_eq!(
        check(Some(json!("other")), iss),
        Err(JwtError::WrongAudience)
    );
    assert_eq!(check(None, iss), Err(JwtError::MissingClaim("aud".into())));
    assert_eq!(
        check(Some(json!("tidings")), Some("https://evil.example")),
        Err(JwtError::WrongIssuer)
    );
    assert_eq!(
        check(Some(json!("tidings")), None),
        Err(JwtError::MissingClaim("iss".into()))
    );
    // With no audience configured, a token meant for someone else is refused.
    let open = verifier(vec![key(Algorithm::ES256)], rules());
    let mut c = claims();
    c["aud"] = json!("someone-else");
    assert_eq!(
        open.verify(&sign(Algorithm::ES256, &c)).map(|_| ()),
        Err(JwtError::WrongAudience)
    );
}

#[test]
fn the_tidings_claim_must_be_well_formed() {
    let v = all_keys();
    for bad in [
        json!({"publish": "a/*"}),
        json!({"subscribe": ["a/*", ""]}),
        json!({"subscribe": ["bad\ncontrol"]}),
        json!({"admin": "yes"}),
        json!({"subscibe": ["*"]}),
        json!(["*"]),
    ] {
        let mut c = claims();
        c["tidings"] = bad.clone();
        let e = v.verify(&sign(Algorithm::HS256, &c)).unwrap_err();
        assert!(matches!(e, JwtError::BadClaim(_)), "{bad}: {e:?}");
        assert!(e.to_string().contains("tidings"), "{e}");
    }
    // Without the claim (and without templates) a token grants nothing.
    let mut c = claims();
    c.as_object_mut().unwrap().remove("tidings");
    let g = v.verify(&sign(Algorithm::HS256, &c)).unwrap();
    assert!(g.publish.is_empty() && g.subscribe.is_empty() && !g.admin);
}

#[test]
fn templates_add_per_token_grants_that_a_claim_cannot_widen() {
    let v = verifier(
        vec![key(Algorithm::EdDSA)],
        JwtRules {
            subscribe_templates: vec![GrantTemplate::parse("users/{sub}/*").unwrap()],
            publish_templates: vec![GrantTemplate::parse("users/{sub}/inbox").unwrap()],
            ..rules()
        },
    );
    let with_sub = |sub: Value| {
        let mut c = claims();
        c["sub"] = sub;
        v.verify(&sign(Algorithm::EdDSA, &c))
    };
    let g = with_sub(json!("bob")).unwrap();
    assert_eq!(g.subscribe, pats(&["a/*", "b", "users/bob/*"]));
    assert_eq!(g.publish, pats(&["a/*", "users/bob/inbox"]));
    for escape in ["*", "bob*", "..", "../alice", "/..", "x/y"] {
        let e = with_sub(json!(escape)).unwrap_err();
        assert!(
            matches!(&e, JwtError::Template(t) if t.claim == "sub"),
            "{escape}: {e:?}"
        );
        assert!(!e.to_string().contains(escape) || escape.len() < 3, "{e}");
    }
    assert!(matches!(with_sub(json!(42)), Err(JwtError::Template(_))));
    // No `sub`: no templated grant, the claimed one stays.
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    let g = v.verify(&sign(Algorithm::EdDSA, &c)).unwrap();
    assert_eq!(g.subscribe, pats(&["a/*", "b"]));
    assert_eq!(g.name, "jwt");
}

fn jwk(alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(&encoding(alg), alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).unwrap()
}

fn jwks_json() -> Vec<u8> {
    let mut enc = jwk(Algorithm::RS256, "enc-1");
    enc["use"] = json!("enc");
    let mut p384 = jwk(Algorithm::ES256, "p384");
    p384["crv"] = json!("P-384");
    serde_json::to_vec(&json!({"keys": [
        jwk(Algorithm::RS256, "rsa-1"),
        jwk(Algorithm::ES256, "ec-1"),
        jwk(Algorithm::EdDSA, "ed-1"),
        enc,
        p384,
    ]}))
    .unwrap()
}

#[test]
fn a_jwks_key_is_selected_by_kid() {
    let keys = JwtKey::from_jwks(&jwks_json()).unwrap();
    let kids: Vec<_> = keys
        .iter()
        .map(|k| (k.kid().unwrap(), k.algorithm()))
        .collect();
    assert_eq!(
        kids,
        [("rsa-1", "RS256"), ("ec-1", "ES256"), ("ed-1", "EdDSA")],
        "the encryption key and the P-384 key are skipped"
    );
    let v = verifier(keys, rules());
    for (alg, kid) in [
        (Algorithm::RS256, "rsa-1"),
        (Algorithm::ES256, "ec-1"),
        (Algorithm::EdDSA, "ed-1"),
    ] {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        let token = jsonwebtoken::encode(&header, &claims(), &encoding(alg)).unwrap();
        assert!(v.verify(&token).is_ok(), "{kid}");
        // The kid of another key: that key is pinned to another algorithm.
        header.kid = Some(if kid == "rsa-1" { "ec-1" } else { "rsa-1" }.into());
        let token = jsonwebtoken::encode(&header, &claims(), &encoding(alg)).unwrap();
        assert_eq!(v.verify(&token), Err(JwtError::NoKey(alg_name(alg))));
    }
    // A JWK whose stated `alg` contradicts its key type is refused.
    let mut lying = jwk(Algorithm::RS256, "x");
    lying["alg"] = json!(KeyAlgorithm::ES256);
    let doc = serde_json::to_vec(&json!({ "keys": [lying] })).unwrap();
    assert!(JwtKey::from_jwks(&doc).unwrap_err().contains("keys[0]"));
    let mut sig = jwk(Algorithm::EdDSA, "y");
    sig["use"] = serde_json::to_value(PublicKeyUse::Signature).unwrap();
    let doc = serde_json::to_vec(&json!({ "keys": [sig] })).unwrap();
    assert_eq!(JwtKey::from_jwks(&doc).unwrap().len(), 1);
}

#[test]
fn unusable_keys_are_refused_at_configuration() {
    let refused = |r: Result<JwtKey, String>, why: &str| {
        let e = r.expect_err(why);
        assert!(e.contains(why), "{e}");
    };
    refused(JwtKey::hs256(b"short"), "at least 32");
    refused(JwtKey::from_public_pem(RSA_KEY.as_bytes()), "private key");
    refused(JwtKey::from_public_pem(ED_KEY.as_bytes()), "private key");
    refused(JwtKey::from_public_pem(P384_PUB.as_bytes()), "P-256");
    refused(JwtKey::from_public_pem(RSA1024_PUB.as_bytes()), "2048");
    refused(JwtKey::from_public_pem(b"hello"), "PEM public key");
    refused(
        JwtKey::from_public_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        "not an RSA",
    );
    assert!(JwtKey::from_jwks(b"{}").is_err());
    assert!(
        JwtKey::from_jwks(br#"{"keys": []}"#)
            .unwrap_err()
            .contains("no signing key")
    );
    assert!(JwtVerifier::new(vec![], rules()).is_err());
}

#[test]
fn malformed_tokens_are_refused_without_echo() {
    let v = all_keys();
    for token in [
        "eyJ",
        "eyJhbGciOiJIUzI1NiJ9.e30",
        "eyJhbGciOiJIUzI1NiJ9.e30.sig.extra",
        "eyJ!!!.e30.c2ln",
        "eyJub3QganNvbg.e30.c2ln",
        &format!("eyJ{}.e30.c2ln", "A".repeat(MAX_JWT_BYTES)),
    ] {
        let e = v.verify(token).unwrap_err();
        assert!(
            matches!(
                e,
                JwtError::Malformed | JwtError::UnsupportedAlgorithm(None)
            ),
            "{token}: {e:?}"
        );
    }
    // A valid header over a payload that is not JSON.
    let good = sign(Algorithm::HS256, &claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = "bm90IGpzb24";
    let e = v.verify(&parts.join(".")).unwrap_err();
    assert!(!e.to_string().contains("bm90"), "{e}");
}

#[test]
fn minted_tokens_verify_for_every_key_type() {
    let spec = TokenSpec {
        publish: vec!["p/*".into()],
        subscribe: vec!["s/*".into(), "t".into()],
        admin: true,
        ttl: Duration::from_secs(3600),
        sub: Some("svc".into()),
        aud: Some("tidings".into()),
        iss: Some("ops".into()),
        kid: None,
    };
    let strict = |k: JwtKey| {
        verifier(
            vec![k],
            JwtRules {
                audience: vec!["tidings".into()],
                issuer: vec!["ops".into()],
                ..rules()
            },
        )
    };
    let signers = [
        (SigningKey::hs256(HS_SECRET).unwrap(), Algorithm::HS256),
        (
            SigningKey::from_private_pem(RSA_KEY.as_bytes()).unwrap(),
            Algorithm::RS256,
        ),
        (
            SigningKey::from_private_pem(P256_KEY.as_bytes()).unwrap(),
            Algorithm::ES256,
        ),
        (
            SigningKey::from_private_pem(ED_KEY.as_bytes()).unwrap(),
            Algorithm::EdDSA,
        ),
    ];
    for (signer, alg) in signers {
        assert_eq!(signer.algorithm(), alg_name(alg));
        let token = signer.mint(&spec, now()).unwrap();
        let g = strict(key(alg)).verify(&token).unwrap();
        assert_eq!(g.publish, pats(&["p/*"]));
        assert_eq!(g.subscribe, pats(&["s/*", "t"]));
        assert!(g.admin);
        let expired = signer.mint(&spec, now() - 7200).unwrap();
        assert_eq!(strict(key(alg)).verify(&expired), Err(JwtError::Expired));
    }
    assert!(SigningKey::from_private_pem(RSA_PUB.as_bytes()).is_err());
    assert!(SigningKey::hs256(b"short").is_err());
    let bad = TokenSpec {
        subscribe: vec!["".into()],
        ..spec
    };
    assert!(
        SigningKey::hs256(HS_SECRET)
            .unwrap()
            .mint(&bad, now())
            .unwrap_err()
            .contains("subscribe")
    );
}
