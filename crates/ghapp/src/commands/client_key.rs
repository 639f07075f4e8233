//! `ghapp client-key new NAME`: a fresh random client key (`ghk_` and 32 random bytes,
//! base64url) and the `[[client]]` lines to paste into the daemon's config — the key's SHA-256,
//! never the key. The key is printed once, on stdout, for the caller to hand to the client.

use super::exit::Failure;
use super::output;
use crate::cli::{ClientKeyArgs, ClientKeyCommand};
use base64::Engine as _;
use zeroize::Zeroizing;

/// Runs `ghapp client-key …`.
pub fn run(args: &ClientKeyArgs) -> anyhow::Result<i32> {
    match &args.command {
        ClientKeyCommand::New { name } => new_key(name),
    }
}

fn new_key(name: &str) -> anyhow::Result<i32> {
    if name.is_empty()
        || name.len() > 64
        || name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '"')
    {
        return Err(Failure::usage(
            "NAME must be 1 to 64 printable characters without spaces or quotes",
        )
        .into());
    }
    let mut random = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut *random)
        .map_err(|_| Failure::new(1, "the system's random number generator failed"))?;
    let key = Zeroizing::new(format!(
        "{}{}",
        ghapp_protocol::client_key::PREFIX,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&*random)
    ));
    let digest = ghapp_protocol::client_key::digest_hex(&key);
    output::print(&format!(
        "# The client key for {name}: give it to the client (Authorization: Bearer KEY); it is shown only now.\n\
         {key}\n\n\
         # Add to the daemon's config (it holds the key's SHA-256, not the key), with a [[policy]] entry for it:\n\
         [[client]]\n\
         name = \"{name}\"\n\
         key_sha256 = \"{digest}\"\n\n\
         [[policy]]\n\
         client = \"{name}\"\n\
         repos = [\"OWNER/REPO\"]\n",
        key = key.as_str()
    ))?;
    Ok(0)
}
