"""PyGithub (pinned in requirements.txt) against the emulator: GithubIntegration's installation
list, repository installation, access token (narrowed) and, as the installation, get_repo.

Usage: python pygithub_client.py API_URL APP_ID KEY_FILE OWNER REPO
Prints one JSON object with what PyGithub saw; any exception fails (exit code 1).
"""

import json
import sys

from github import Auth, GithubIntegration


def main() -> None:
    api_url, app_id, key_file, owner, repo = sys.argv[1:6]
    with open(key_file, encoding="utf-8") as handle:
        private_key = handle.read()
    integration = GithubIntegration(base_url=api_url, auth=Auth.AppAuth(int(app_id), private_key))
    installations = [i.id for i in integration.get_installations()]
    installation = integration.get_repo_installation(owner, repo)
    token = integration.get_access_token(
        installation.id, permissions={"contents": "read"}
    )
    github = integration.get_github_for_installation(installation.id)
    repository = github.get_repo(f"{owner}/{repo}")
    # Attributes PyGithub would fetch lazily if the answer lacked them.
    seen = {
        "installations": installations,
        "installation_id": installation.id,
        "installation_target_type": installation.target_type,
        "token_expires_at": token.expires_at.isoformat(),
        "token_permissions": token.permissions,
        "repo_full_name": repository.full_name,
        "repo_id": repository.id,
        "repo_private": repository.private,
        "repo_default_branch": repository.default_branch,
        "repo_owner_login": repository.owner.login,
        "repo_clone_url": repository.clone_url,
        "repo_network_count": repository.network_count,
        "repo_subscribers_count": repository.subscribers_count,
        "repo_has_discussions": repository.has_discussions,
    }
    print(json.dumps(seen))
    if token.token in json.dumps(seen):
        raise SystemExit("the token leaked into the output")


if __name__ == "__main__":
    main()
