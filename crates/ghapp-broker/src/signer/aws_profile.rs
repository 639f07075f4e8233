//! The AWS region and credentials for `signer = "aws_kms"`, from the part of the AWS SDK's
//! standard chain that needs no network: the environment, then the shared profile files
//! (`~/.aws/credentials`, `~/.aws/config`, parsed with `rust-ini`). Container and instance
//! roles (ECS, EC2 IMDS), SSO, web identity and `credential_process` are not read (docs/keys.md).
//!
//! Every lookup takes the environment as a function, so tests give it a temp `HOME`.

use aws_credential_types::Credentials;
use ini::Ini;
use std::path::PathBuf;

/// The profile named by `AWS_PROFILE`, else `default`.
fn profile_name(env: &dyn Fn(&str) -> Option<String>) -> String {
    env("AWS_PROFILE")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

fn file(env: &dyn Fn(&str) -> Option<String>, var: &str, name: &str) -> Option<PathBuf> {
    env(var)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".aws").join(name)))
}

/// A value of the profile: in the credentials file under `[name]`, or in the config file under
/// `[profile name]` (`[default]` for the default profile); `Err` when a file exists but does
/// not parse.
fn profile_value(
    env: &dyn Fn(&str) -> Option<String>,
    key: &str,
) -> Result<Option<String>, String> {
    let name = profile_name(env);
    let config_section = if name == "default" {
        "default".to_string()
    } else {
        format!("profile {name}")
    };
    let sources = [
        (
            file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            name.clone(),
        ),
        (file(env, "AWS_CONFIG_FILE", "config"), config_section),
    ];
    for (path, section) in sources {
        let Some(path) = path.filter(|p| p.is_file()) else {
            continue;
        };
        let ini = Ini::load_from_file(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if let Some(value) = ini
            .section(Some(section.as_str()))
            .and_then(|s| s.get(key))
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            return Ok(Some(value.to_string()));
        }
    }
    Ok(None)
}

/// The region: `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's `region`.
pub(super) fn region(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    if let Some(region) = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .filter(|r| !r.is_empty())
    {
        return Ok(Some(region));
    }
    profile_value(env, "region")
}

/// The credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`) from
/// the environment, else the profile's `aws_access_key_id` + `aws_secret_access_key`
/// (+ `aws_session_token`). Read on every signature, so rotated files are picked up.
pub(super) fn credentials(env: &dyn Fn(&str) -> Option<String>) -> Result<Credentials, String> {
    let nonempty = |var: &str| env(var).filter(|v| !v.is_empty());
    if let (Some(id), Some(secret)) = (
        nonempty("AWS_ACCESS_KEY_ID"),
        nonempty("AWS_SECRET_ACCESS_KEY"),
    ) {
        let session = nonempty("AWS_SESSION_TOKEN");
        return Ok(Credentials::new(id, secret, session, None, "environment"));
    }
    let name = profile_name(env);
    match (
        profile_value(env, "aws_access_key_id")?,
        profile_value(env, "aws_secret_access_key")?,
    ) {
        (Some(id), Some(secret)) => {
            let session = profile_value(env, "aws_session_token")?;
            Ok(Credentials::new(id, secret, session, None, "profile"))
        }
        _ => Err(format!(
            "no AWS credentials: neither AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY nor aws_access_key_id/aws_secret_access_key in profile {name:?} of the shared files (instance roles, SSO and credential_process are not read)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn home_with(credentials: &str, config: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let aws = home.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(aws.join("credentials"), credentials).unwrap();
        std::fs::write(aws.join("config"), config).unwrap();
        home
    }

    #[test]
    fn the_environment_comes_first() {
        let home = home_with(
            "[default]\naws_access_key_id = FILE\naws_secret_access_key = s\n",
            "",
        );
        let env = env_of(&[
            ("HOME", home.path().display().to_string()),
            ("AWS_ACCESS_KEY_ID", "ENV".into()),
            ("AWS_SECRET_ACCESS_KEY", "e".into()),
            ("AWS_REGION", "eu-west-1".into()),
        ]);
        assert_eq!(credentials(&env).unwrap().access_key_id(), "ENV");
        assert_eq!(region(&env).unwrap().as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn the_default_profile_and_a_named_one_are_read_from_the_shared_files() {
        let home = home_with(
            "[default]\naws_access_key_id = DEF\naws_secret_access_key = d\n\n[ci]\naws_access_key_id = CI\naws_secret_access_key = c\naws_session_token = tok\n",
            "[default]\nregion = us-east-2\n\n[profile ci]\nregion = ap-south-1\n",
        );
        let home_var = ("HOME", home.path().display().to_string());
        let env = env_of(std::slice::from_ref(&home_var));
        let creds = credentials(&env).unwrap();
        assert_eq!(creds.access_key_id(), "DEF");
        assert_eq!(creds.session_token(), None);
        assert_eq!(region(&env).unwrap().as_deref(), Some("us-east-2"));

        let env = env_of(&[home_var, ("AWS_PROFILE", "ci".into())]);
        let creds = credentials(&env).unwrap();
        assert_eq!(creds.access_key_id(), "CI");
        assert_eq!(creds.session_token(), Some("tok"));
        assert_eq!(region(&env).unwrap().as_deref(), Some("ap-south-1"));
    }

    #[test]
    fn file_locations_follow_their_variables_and_credentials_may_sit_in_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cfg");
        std::fs::write(
            &config,
            "[profile x]\naws_access_key_id = CFG\naws_secret_access_key = k\nregion = sa-east-1\n",
        )
        .unwrap();
        let env = env_of(&[
            ("HOME", "/nonexistent".into()),
            ("AWS_CONFIG_FILE", config.display().to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.path().join("none").display().to_string(),
            ),
            ("AWS_PROFILE", "x".into()),
        ]);
        assert_eq!(credentials(&env).unwrap().access_key_id(), "CFG");
        assert_eq!(region(&env).unwrap().as_deref(), Some("sa-east-1"));
    }

    #[test]
    fn nothing_found_says_what_was_looked_for() {
        let home = home_with("", "");
        let env = env_of(&[("HOME", home.path().display().to_string())]);
        let err = credentials(&env).unwrap_err();
        assert!(err.contains("profile \"default\""), "{err}");
        assert_eq!(region(&env).unwrap(), None);
    }
}
