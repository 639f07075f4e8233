"""Packit's ogr (pinned in requirements.txt) against ghapp's tokman route: a GithubService with
only `tokman_instance_url` set, whose Tokman provider does `GET {url}/api/{namespace}/{repo}`
(a 400 becomes GithubAppNotInstalledError, >= 500 OgrNetworkError, other failures OgrException).

Usage: python ogr_tokman.py TOKMAN_URL NAMESPACE REPO [API_URL]
HTTPS trust comes from REQUESTS_CA_BUNDLE, as in a Packit worker. With API_URL, the token is
also used (PyGithub, as ogr's projects do) to read NAMESPACE/REPO there.

Prints one JSON object and exits 0:
  {"ok": true, "provider": "Tokman", "token_fingerprint": "sha256:<12 hex>", "repo": "o/r"}
  {"ok": false, "provider": "Tokman", "error_class": "GithubAppNotInstalledError", "message": ...}
The token itself is never printed (only ghapp's fingerprint: sha256, first 12 hex digits).
"""

import hashlib
import json
import sys

from ogr.exceptions import OgrException
from ogr.services.github import GithubService
from ogr.services.github.auth_providers import Tokman


def fingerprint(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def main() -> None:
    tokman_url, namespace, repo = sys.argv[1:4]
    api_url = sys.argv[4] if len(sys.argv) > 4 else None
    service = GithubService(tokman_instance_url=tokman_url)
    provider = service.authentication
    result = {"provider": type(provider).__name__}
    if not isinstance(provider, Tokman):
        raise SystemExit(f"ogr chose {provider!s}, not its Tokman provider")
    try:
        token = provider.get_token(namespace, repo)
    except OgrException as error:
        result.update(ok=False, error_class=type(error).__name__, message=str(error))
        print(json.dumps(result))
        return
    if not token:
        result.update(ok=False, error_class="NoToken", message="tokman answered without access_token")
        print(json.dumps(result))
        return
    result.update(ok=True, token_fingerprint=fingerprint(token))
    if api_url:
        from ogr.services.github.service import PyGithubInstance

        github = PyGithubInstance(base_url=api_url, login_or_token=token)
        result["repo"] = github.get_repo(f"{namespace}/{repo}").full_name
    output = json.dumps(result)
    if token in output:
        raise SystemExit("the token leaked into the output")
    print(output)


if __name__ == "__main__":
    main()
