// @octokit/auth-app with @octokit/request (pinned in package.json) against the emulator: App
// authentication (GET /app with the JWT, through auth.hook), the repository's installation,
// a narrowed installation token, and the hook authenticating installation requests.
//
// Usage: node octokit_client.mjs API_URL APP_ID KEY_FILE OWNER REPO
// Prints one JSON object with what octokit saw; any error fails (exit code 1).

import { readFileSync } from "node:fs";
import { createAppAuth } from "@octokit/auth-app";
import { request } from "@octokit/request";

const [apiUrl, appId, keyFile, owner, repo] = process.argv.slice(2);
const privateKey = readFileSync(keyFile, "utf8");
const base = request.defaults({ baseUrl: apiUrl });

const appAuth = createAppAuth({ appId: Number(appId), privateKey, request: base });
const app = await appAuth({ type: "app" });
const asApp = base.defaults({ request: { hook: appAuth.hook } });
const { data: appData } = await asApp("GET /app");
const { data: installation } = await asApp("GET /repos/{owner}/{repo}/installation", { owner, repo });

const narrowed = await appAuth({
  type: "installation",
  installationId: installation.id,
  repositoryNames: [repo],
  permissions: { contents: "read" },
});
const { data: reachable } = await base("GET /installation/repositories", {
  headers: { authorization: `token ${narrowed.token}` },
});

const installationAuth = createAppAuth({
  appId: Number(appId),
  privateKey,
  installationId: installation.id,
  request: base,
});
const asInstallation = base.defaults({ request: { hook: installationAuth.hook } });
const { data: repository } = await asInstallation("GET /repos/{owner}/{repo}", { owner, repo });

const seen = {
  app_auth_type: app.type,
  app_slug: appData.slug,
  installation_id: installation.id,
  narrowed_type: narrowed.tokenType,
  narrowed_selection: narrowed.repositorySelection,
  narrowed_permissions: narrowed.permissions,
  narrowed_expires_at: narrowed.expiresAt,
  reachable: reachable.repositories.map((r) => r.full_name),
  repo_full_name: repository.full_name,
};
const text = JSON.stringify(seen);
if (text.includes(narrowed.token)) {
  throw new Error("the token leaked into the output");
}
console.log(text);
