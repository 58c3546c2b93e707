//! JWT end to end, with tokens minted by an independent library (PyJWT, from PyPI) for every
//! algorithm: accepted tokens carry their grants; `alg: none`, HS/RS confusion, expired,
//! not-yet-valid, wrong audience and wrong issuer are 401 naming the reason; grant escapes
//! by prefix, `*`, look-alikes, another user's template subtree, a claim that tries to widen
//! a template, a batch with one forbidden topic and a mid-list forbidden selector are refused
//! whole and change nothing; and `tidings token`'s output verifies with PyJWT.
//!
//! Needs `TIDINGS_TEST_PYTHON` (set by `./scripts/test`, with `pyjwt` and `cryptography`
//! from tests/requirements.txt); without it the tests fail, they do not skip.

use std::collections::HashMap;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{BIN, Launch, Server};

const HS_SECRET: &str = "an-hs256-secret-for-the-e2e-tests-0123456789";
const STATIC: &str = "static-token-still-works";
const ALGS: [&str; 4] = ["HS256", "RS256", "ES256", "EdDSA"];

/// Generates the keys with `cryptography` and mints every token with PyJWT (`setup`), or
/// verifies a token with PyJWT and prints its claims (`verify`).
const PYTHON: &str = r#"
import base64, hashlib, hmac, json, sys, time
import jwt
from jwt.algorithms import RSAAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

mode, d, HS = sys.argv[1], sys.argv[2], sys.argv[3]
AUD, ISS = "tidings", "https://idp.test"
FILES = {"RS256": "rsa", "ES256": "p256", "EdDSA": "ed25519"}

def pem_pub(k):
    return k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

if mode == "setup":
    keys = {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }
    for alg, k in keys.items():
        with open(f"{d}/{FILES[alg]}.key", "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        with open(f"{d}/{FILES[alg]}.pub", "wb") as f:
            f.write(pem_pub(k))
    jwks_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(jwks_key.public_key()))
    jwk.update(kid="jwks-rsa", use="sig", alg="RS256")
    with open(f"{d}/jwks.json", "w") as f:
        json.dump({"keys": [jwk]}, f)

    now = int(time.time())
    def claims(**over):
        c = {"sub": "alice", "aud": AUD, "iss": ISS, "iat": now, "exp": now + 600,
             "tidings": {"publish": ["granted/*"], "subscribe": ["granted/*"]}}
        c.update(over)
        return c
    def sign(alg, c, key=None, headers=None):
        k = HS if alg == "HS256" else (key or keys[alg])
        return jwt.encode(c, k, algorithm=alg, headers=headers)
    t = {}
    for alg in ["HS256", "RS256", "ES256", "EdDSA"]:
        t["ok " + alg] = sign(alg, claims())
        t["expired " + alg] = sign(alg, claims(exp=now - 3600))
        t["not-yet-valid " + alg] = sign(alg, claims(nbf=now + 3600))
        t["wrong-aud " + alg] = sign(alg, claims(aud="someone-else"))
        t["wrong-iss " + alg] = sign(alg, claims(iss="https://evil.test"))
        t["no-aud " + alg] = sign(alg, {k: v for k, v in claims().items() if k != "aud"})
    t["jwks"] = sign("RS256", claims(sub="carol"), key=jwks_key, headers={"kid": "jwks-rsa"})
    t["jwks signed by another key"] = sign("RS256", claims(), headers={"kid": "jwks-rsa"})
    t["none"] = jwt.encode(claims(), None, algorithm="none")
    # HS/RS confusion: HS256 with the RSA public key PEM as the HMAC secret. PyJWT refuses to
    # do this itself, so the token is put together by hand.
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(pem_pub(keys["RS256"]), f"{head}.{body}".encode(), hashlib.sha256)
    t["confused"] = f"{head}.{body}.{b64(mac.digest())}"
    t["sub *"] = sign("ES256", claims(sub="*"))
    t["sub /.."] = sign("ES256", claims(sub="/.."))
    t["sub .."] = sign("ES256", claims(sub=".."))
    t["sub bob*"] = sign("ES256", claims(sub="bob*"))
    print(json.dumps(t))
elif mode == "verify":
    alg, token = sys.argv[4], sys.argv[5]
    key = HS if alg == "HS256" else open(f"{d}/{FILES[alg]}.pub").read()
    print(json.dumps(jwt.decode(token, key, algorithms=[alg], audience=AUD, issuer=ISS)))
"#;

fn python(args: &[&str]) -> String {
    let python = std::env::var("TIDINGS_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "TIDINGS_TEST_PYTHON is not set: run ./scripts/test, which installs PyJWT and \
             cryptography (crates/tidings/tests/requirements.txt)"
        )
    });
    let out = Command::new(&python)
        .arg("-c")
        .arg(PYTHON)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
    assert!(
        out.status.success(),
        "python {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

struct Fixture {
    dir: tempfile::TempDir,
    tokens: HashMap<String, String>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = python(&["setup", &dir.path().display().to_string(), HS_SECRET]);
        let tokens = serde_json::from_str(&out).expect("tokens JSON");
        Fixture { dir, tokens }
    }

    fn token(&self, name: &str) -> &str {
        self.tokens
            .get(name)
            .unwrap_or_else(|| panic!("no token {name}"))
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    fn server(&self) -> Server {
        let (rsa, p256, ed, jwks) = (
            self.path("rsa.pub"),
            self.path("p256.pub"),
            self.path("ed25519.pub"),
            self.path("jwks.json"),
        );
        let spec = format!("{STATIC}:publish=*;subscribe=*");
        Server::launch(
            Launch::new(&[
                "--jwt-public-key",
                &rsa,
                "--jwt-public-key",
                &p256,
                "--jwt-public-key",
                &ed,
                "--jwks-file",
                &jwks,
                "--jwt-audience",
                "tidings",
                "--jwt-issuer",
                "https://idp.test",
                "--jwt-leeway",
                "5s",
                "--jwt-subscribe-template",
                "users/{sub}/*",
                "--jwt-publish-template",
                "users/{sub}/*",
                "--token",
                &spec,
            ])
            // The secret through the environment, as the docs advise.
            .env("TIDINGS_JWT_HS256_SECRET", HS_SECRET),
        )
    }
}

async fn publish(server: &Server, token: &str, body: &Value) -> (u16, Value) {
    server
        .publish_raw(body, &[("authorization", &format!("Bearer {token}"))])
        .await
}

async fn subscribe(server: &Server, token: &str, query: &str) -> (u16, Value) {
    let resp = server
        .get_events(query, &[("authorization", &format!("Bearer {token}"))])
        .await;
    let status = resp.status().as_u16();
    if status == 200 {
        return (status, Value::Null);
    }
    (status, resp.json().await.expect("error JSON"))
}

/// The error body says `code` and its message contains `why`, and does not echo the token.
fn assert_error(v: &Value, code: &str, why: &str, token: &str, case: &str) {
    assert_eq!(v["error"]["code"], code, "{case}: {v}");
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(msg.contains(why), "{case}: `{msg}` does not say `{why}`");
    let sig = token.rsplit('.').next().unwrap_or_default();
    assert!(
        !msg.contains(token) && (sig.len() < 8 || !msg.contains(sig)),
        "{case}: the message echoes the token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pyjwt_tokens_of_every_algorithm_work_and_each_refusal_is_a_401_naming_its_reason() {
    let f = Fixture::new();
    let server = f.server();

    let mut refusals: Vec<(String, &str)> = vec![
        ("none".into(), "unsupported algorithm `none`"),
        ("confused".into(), "bad signature"),
        ("jwks signed by another key".into(), "bad signature"),
    ];
    for alg in ALGS {
        refusals.push((format!("expired {alg}"), "expired"));
        refusals.push((format!("not-yet-valid {alg}"), "not yet valid"));
        refusals.push((format!("wrong-aud {alg}"), "wrong audience"));
        refusals.push((format!("wrong-iss {alg}"), "wrong issuer"));
        refusals.push((format!("no-aud {alg}"), "`aud` is required"));
    }
    for (case, why) in &refusals {
        let token = f.token(case);
        let (status, v) =
            publish(&server, token, &json!({"topic": "granted/x", "type": "t"})).await;
        assert_eq!(status, 401, "publish with {case}: {v}");
        assert_error(&v, "unauthorized", why, token, case);
        let (status, v) = subscribe(&server, token, "topic=granted/*").await;
        assert_eq!(status, 401, "subscribe with {case}: {v}");
        assert_error(&v, "unauthorized", why, token, case);
    }
    assert_eq!(
        server.readyz().await["head"],
        0,
        "a refusal published nothing"
    );

    // Every algorithm's valid token subscribes and publishes within its grant.
    let mut published = 0;
    for alg in ALGS
        .iter()
        .map(|a| format!("ok {a}"))
        .chain(["jwks".into()])
    {
        let token = f.token(&alg);
        let mut sub = server
            .subscribe_with(
                "topic=granted/*",
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await;
        sub.expect_retry().await;
        let (status, v) =
            publish(&server, token, &json!({"topic": "granted/x", "type": "t"})).await;
        assert_eq!(status, 200, "{alg}: {v}");
        published += 1;
        let id = v["ids"][0].as_str().expect("id");
        assert_eq!(sub.next_event().await.last_event_id, id, "{alg}");
    }
    // The static token works alongside.
    let (status, v) = publish(&server, STATIC, &json!({"topic": "anything", "type": "t"})).await;
    assert_eq!(status, 200, "{v}");
    published += 1;
    assert_eq!(server.readyz().await["head"], published);

    let stderr = server.stderr();
    for (name, token) in &f.tokens {
        let sig = token.rsplit('.').next().unwrap_or_default();
        assert!(
            sig.len() < 8 || !stderr.contains(sig),
            "the log shows token {name}"
        );
    }
    assert!(!stderr.contains(HS_SECRET) && !stderr.contains(STATIC));
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_cannot_be_escaped_and_a_refused_request_changes_nothing() {
    let f = Fixture::new();
    let server = f.server();
    let alice = f.token("ok ES256");

    // Subscribe: a prefix or `*` never reaches past `granted/*` or `users/alice/*`.
    for query in [
        "topic=granted*",
        "topic=*",
        "topic=grantedX/a",
        "topic=granted",
        "topic=granted%EF%BC%8Fa", // `granted／a`, a fullwidth solidus
        "topic=users/*",
        "topic=users/alice*",
        "topic=users/bob/*",
        "topic=users/alicex/*",
    ] {
        let (status, v) = subscribe(&server, alice, query).await;
        assert_eq!(status, 403, "{query}: {v}");
        let asked = query
            .trim_start_matches("topic=")
            .replace("%EF%BC%8F", "\u{FF0F}");
        assert_error(&v, "forbidden", &format!("`{asked}`"), alice, query);
    }
    // A forbidden selector in the middle of a list refuses the whole subscription, naming it.
    let (status, v) = subscribe(
        &server,
        alice,
        "topic=granted/a&topic=forbidden/x&topic=users/alice/y",
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert_error(&v, "forbidden", "`forbidden/x`", alice, "mid-list");

    // Publish: only granted topics; a batch with one forbidden event is refused whole.
    for topic in ["grantedX", "granted", "users/bob/x", "users/alicex"] {
        let (status, v) = publish(&server, alice, &json!({"topic": topic, "type": "t"})).await;
        assert_eq!(status, 403, "{topic}: {v}");
        assert_error(&v, "forbidden", &format!("`{topic}`"), alice, topic);
    }
    let batch = json!([
        {"topic": "granted/a", "type": "t"},
        {"topic": "users/alice/b", "type": "t"},
        {"topic": "users/bob/c", "type": "t"},
    ]);
    let (status, v) = publish(&server, alice, &batch).await;
    assert_eq!(status, 403, "{v}");
    assert_error(&v, "forbidden", "events[2].topic", alice, "batch");

    // A claim that would widen the `users/{sub}/*` template refuses the token.
    for case in ["sub *", "sub /..", "sub ..", "sub bob*"] {
        let token = f.token(case);
        let (status, v) = subscribe(&server, token, "topic=granted/a").await;
        assert_eq!(status, 401, "{case}: {v}");
        assert_error(&v, "unauthorized", "claim `sub`", token, case);
    }
    assert_eq!(server.readyz().await["head"], 0, "nothing was published");

    // Within the grants (the claim's and the template's), everything works.
    let mut own = server
        .subscribe_with(
            "topic=users/alice/*&topic=granted/a/*",
            &[("authorization", &format!("Bearer {alice}"))],
        )
        .await;
    own.expect_retry().await;
    let (status, v) = publish(&server, alice, &json!(batch.as_array().unwrap()[..2])).await;
    assert_eq!(status, 200, "{v}");
    let ids: Vec<&str> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        own.next_event().await.last_event_id,
        ids[1],
        "users/alice/b arrives"
    );
    let (status, v) = publish(
        &server,
        alice,
        &json!({"topic": "granted/a/deep", "type": "t"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let id = v["ids"][0].as_str().expect("id");
    assert_eq!(own.next_event().await.last_event_id, id);
}

fn tidings_token(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("token")
        .args(args)
        .env_remove("TIDINGS_JWT_HS256_SECRET")
        .output()
        .expect("run tidings token");
    assert!(
        out.status.success(),
        "tidings token {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn tidings_token_output_verifies_with_pyjwt_and_is_accepted() {
    let f = Fixture::new();
    let server = f.server();
    let dir = f.dir.path().display().to_string();
    let common = [
        "--subscribe",
        "granted/*",
        "--publish",
        "granted/x",
        "--admin",
        "--ttl",
        "1h",
        "--sub",
        "ops",
        "--aud",
        "tidings",
        "--iss",
        "https://idp.test",
    ];
    for alg in ALGS {
        let key = match alg {
            "RS256" => Some(f.path("rsa.key")),
            "ES256" => Some(f.path("p256.key")),
            "EdDSA" => Some(f.path("ed25519.key")),
            _ => None,
        };
        let mut args: Vec<&str> = match &key {
            Some(k) => vec!["--key", k],
            None => vec!["--hs256-secret", HS_SECRET],
        };
        args.extend(common);
        let token = tidings_token(&args);
        let claims: Value =
            serde_json::from_str(&python(&["verify", &dir, HS_SECRET, alg, &token]))
                .expect("claims JSON");
        assert_eq!(claims["sub"], "ops", "{alg}");
        assert_eq!(
            claims["tidings"],
            json!({"publish": ["granted/x"], "subscribe": ["granted/*"], "admin": true}),
            "{alg}"
        );
        let ttl = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert_eq!(ttl, 3600, "{alg}");

        let (status, v) =
            publish(&server, &token, &json!({"topic": "granted/x", "type": "t"})).await;
        assert_eq!(status, 200, "{alg}: {v}");
        let (status, v) =
            publish(&server, &token, &json!({"topic": "granted/y", "type": "t"})).await;
        assert_eq!(status, 403, "{alg}: {v}");
    }
    // A key that cannot sign is a usage error naming the flag.
    let out = Command::new(BIN)
        .args(["token", "--key", &f.path("rsa.pub")])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--key"));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_only_an_rsa_key_an_hs256_token_finds_no_key_to_be_checked_with() {
    let f = Fixture::new();
    let rsa = f.path("rsa.pub");
    let server = Server::launch(Launch::new(&[
        "--jwt-public-key",
        &rsa,
        "--jwt-audience",
        "tidings",
        "--jwt-issuer",
        "https://idp.test",
    ]));
    // The RSA public key used as an HMAC secret, and an honest HS256 token: neither is
    // checked against the RSA key, whatever the token's `alg` says.
    for case in ["confused", "ok HS256", "none"] {
        let token = f.token(case);
        let (status, v) = subscribe(&server, token, "topic=granted/*").await;
        assert_eq!(status, 401, "{case}: {v}");
        let why = if case == "none" {
            "unsupported algorithm `none`"
        } else {
            "unsupported algorithm: no configured key verifies HS256 tokens"
        };
        assert_error(&v, "unauthorized", why, token, case);
    }
    let (status, v) = subscribe(&server, f.token("ok RS256"), "topic=granted/*").await;
    assert_eq!(status, 200, "{v}");
}

/// A token that expires in 2 s: every stream opened with it (SSE with the header, SSE with a
/// ticket minted from it and a client id, WebSocket) gets `reconnect-required` (`token_expired`) when it
/// expires and is closed; the ticket's own 60 s TTL does not extend the stream.
#[tokio::test(flavor = "multi_thread")]
async fn streams_end_with_token_expired_when_their_token_expires() {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let f = Fixture::new();
    let server = f.server();
    let short = tidings_token(&[
        "--hs256-secret",
        HS_SECRET,
        "--subscribe",
        "granted/*",
        "--ttl",
        "2s",
        "--sub",
        "short-lived",
        "--aud",
        "tidings",
        "--iss",
        "https://idp.test",
    ]);
    let minted = std::time::Instant::now();
    let auth = format!("Bearer {short}");
    let mut sse = server
        .subscribe_with("topic=granted/a", &[("authorization", &auth)])
        .await;
    let resp = server
        .http
        .post(server.url("/tickets"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ticket: Value = resp.json().await.unwrap();
    assert_eq!(ticket["expires_in"], 60);
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    // The ticket's stream is also a client-id session: expiry ends sessions as well.
    let mut by_ticket = server
        .subscribe_with(
            &format!("topic=granted/a&ticket={ticket}&clientId=jwt-session"),
            &[],
        )
        .await;
    assert_eq!(by_ticket.next_event().await.event, "subscribed");
    let mut req = format!("ws://{}/events?topic=granted/a", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", auth.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("ws");

    // Live until then.
    let (status, v) = publish(
        &server,
        STATIC,
        &json!({"topic": "granted/a", "type": "t", "data": 1}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(sse.next_event().await.data, "1");
    assert_eq!(by_ticket.next_event().await.data, "1");

    for stream in [&mut sse, &mut by_ticket] {
        let rest = stream.read_to_end().await;
        let last = rest.last().expect("a notice before the end");
        assert_eq!(last.event, "reconnect-required", "{rest:?}");
        let notice: Value = serde_json::from_str(&last.data).unwrap();
        assert_eq!(notice["reason"], "token_expired");
    }
    let ended = minted.elapsed();
    assert!(
        ended >= std::time::Duration::from_millis(900)
            && ended < std::time::Duration::from_secs(10),
        "ended {ended:?} after minting a 2 s token"
    );
    let mut saw_notice = false;
    let code = loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("the WebSocket ends in time");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v.to_string().contains("token_expired") {
                    saw_notice = true;
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("the WebSocket ended without a close frame: {other:?}"),
        }
    };
    assert!(saw_notice, "reconnect-required (token_expired) came first");
    assert_eq!(code, Some(tidings_server::CLOSE_TOKEN_EXPIRED));
}
