//! `tidings token`: prints a signed JWT carrying a Tidings grant, for operators and tests.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{ArgGroup, Args};
use tidings_auth::{Secret, SigningKey, TokenSpec};

/// Exit code for unusable arguments or keys (EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// `tidings token` arguments.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("signing").required(true).multiple(true).args(["hs256_secret", "key"])))]
pub(crate) struct TokenArgs {
    /// Sign HS256 with this shared secret (at least 32 bytes); prefer the environment variable.
    #[arg(
        long,
        env = "TIDINGS_JWT_HS256_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    hs256_secret: Option<Secret>,
    /// Sign with this PEM private key (PKCS#8, or PKCS#1 for RSA): RSA signs RS256, P-256
    /// ES256, Ed25519 EdDSA. Wins over a secret from the environment.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// A selector the token may publish to (repeatable).
    #[arg(long, value_name = "SEL")]
    publish: Vec<String>,
    /// A selector the token may subscribe to (repeatable).
    #[arg(long, value_name = "SEL")]
    subscribe: Vec<String>,
    /// Grant the admin right.
    #[arg(long)]
    admin: bool,
    /// How long the token is valid, e.g. `15m`, `1h`, `7d`.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    ttl: String,
    /// The `sub` claim (fills `{sub}` in the hub's grant templates).
    #[arg(long, value_name = "ID")]
    sub: Option<String>,
    /// The `aud` claim.
    #[arg(long, value_name = "AUD")]
    aud: Option<String>,
    /// The `iss` claim.
    #[arg(long, value_name = "ISS")]
    iss: Option<String>,
    /// The header's `kid`, to select a key of the hub's JWKS file.
    #[arg(long, value_name = "KID")]
    kid: Option<String>,
}

/// Prints the token, or says which argument is wrong and exits 64.
pub(crate) fn run(args: TokenArgs) -> ExitCode {
    match mint(args) {
        Ok(token) => match writeln!(std::io::stdout().lock(), "{token}") {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
        Err(e) => {
            eprintln!("tidings token: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn mint(args: TokenArgs) -> Result<String, String> {
    let key = match (&args.hs256_secret, &args.key) {
        (_, Some(path)) => {
            let pem = std::fs::read(path).map_err(|e| format!("--key {}: {e}", path.display()))?;
            SigningKey::from_private_pem(&pem)
                .map_err(|e| format!("--key {}: {e}", path.display()))?
        }
        (Some(secret), None) => SigningKey::hs256(secret.expose().as_bytes())
            .map_err(|e| format!("--hs256-secret: {e}"))?,
        (None, None) => return Err("give --hs256-secret or --key".into()),
    };
    let ttl = tidings_server::config::duration("--ttl", Some(&args.ttl), "1h")
        .map_err(|e| e.to_string())?;
    if ttl.is_zero() {
        return Err("--ttl: must be longer than 0s".into());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the system clock is before 1970".to_owned())?
        .as_secs();
    let spec = TokenSpec {
        publish: args.publish,
        subscribe: args.subscribe,
        admin: args.admin,
        ttl,
        sub: args.sub,
        aud: args.aud,
        iss: args.iss,
        kid: args.kid,
    };
    key.mint(&spec, now)
}
