//! The client subcommands (`publish`, `subscribe`, `watch`), built on `tidings-client` only: the
//! flags they share, their exit codes, and the runtime they run on.

pub(crate) mod publish;
pub(crate) mod subscribe;
pub(crate) mod watch;

use std::future::Future;
use std::process::ExitCode;

use tidings_client::{Client, ErrorKind};

/// Exit codes of the client subcommands, shown in their `--help`.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0   done
  2   the command line is wrong
  64  a flag's value is invalid
  65  the input is not a valid event, or the hub refused it (4xx)
  69  the hub could not be reached, or kept failing, after retries
  77  the hub refused the credential (401) or the grant (403)";

/// The input, or the hub's answer to it, is not acceptable (EX_DATAERR).
pub(crate) const EXIT_DATA: u8 = 65;
/// The hub could not be reached or kept failing (EX_UNAVAILABLE).
pub(crate) const EXIT_UNAVAILABLE: u8 = 69;
/// 401 or 403 (EX_NOPERM).
pub(crate) const EXIT_NOPERM: u8 = 77;

/// Where the hub is and how to authenticate.
#[derive(Debug, clap::Args)]
pub(crate) struct HubArgs {
    /// The hub's base URL.
    #[arg(
        long,
        env = "TIDINGS_URL",
        default_value = "http://127.0.0.1:1700",
        value_name = "URL"
    )]
    url: String,
    /// A bearer token.
    #[arg(
        long,
        env = "TIDINGS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
}

impl HubArgs {
    pub(crate) fn client(&self, client_id: Option<&str>) -> Result<Client, tidings_client::Error> {
        let mut b = Client::builder(&self.url);
        if let Some(t) = &self.token {
            b = b.token(t);
        }
        if let Some(id) = client_id {
            b = b.client_id(id);
        }
        b.build()
    }
}

/// Prints a client error and maps it to an exit code.
pub(crate) fn fail(e: &tidings_client::Error) -> ExitCode {
    eprintln!("tidings: {e}");
    ExitCode::from(match e.kind() {
        ErrorKind::Unauthorized | ErrorKind::Forbidden => EXIT_NOPERM,
        ErrorKind::InvalidInput | ErrorKind::Rejected => EXIT_DATA,
        _ => EXIT_UNAVAILABLE,
    })
}

/// Runs a command's future on a single-threaded runtime.
pub(crate) fn block_on(f: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("tidings: failed to start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
