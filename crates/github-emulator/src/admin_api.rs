//! The admin API handlers (`/_emulator/...` on the API port): stats and fault injection.

use crate::admin::{Fault, Stats};
use crate::core::Core;
use crate::faults::{Action, RouteFault};
use crate::http::{Body, json, read_body};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json as j;
use std::time::Duration;

/// Serves `/_emulator/...`, with a `Date` from the emulator's clock like every other answer.
pub async fn handle(core: &Core, req: Request<Incoming>) -> Response<Body> {
    let mut response = route(core, req).await;
    if let Ok(date) = http::HeaderValue::from_str(&core.clock.http_date()) {
        response.headers_mut().insert(http::header::DATE, date);
    }
    response
}

async fn route(core: &Core, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_end_matches('/');
    if crate::admin_resources::serves(path) {
        return crate::admin_resources::handle(core, &parts.method, path, body).await;
    }
    if path.starts_with("/_emulator/oidc/") {
        return crate::oidc_http::admin(core, &parts.method, path, body).await;
    }
    match (&parts.method, path) {
        (&Method::GET, "/_emulator/stats") => {
            let stats = core.lock().stats.clone();
            json(StatusCode::OK, &stats)
        }
        (&Method::DELETE, "/_emulator/stats") => {
            core.lock().stats = Stats::default();
            ok()
        }
        (&Method::GET, "/_emulator/health") => ok(),
        (&Method::GET, "/_emulator/tokens") => {
            let issued = core.lock().issued.clone();
            json(StatusCode::OK, &issued)
        }
        (&Method::GET, "/_emulator/faults") => {
            let state = core.lock();
            json(
                StatusCode::OK,
                &j!({
                    "route_faults": state.faults.len(),
                    "clock_offset": core.clock.offset(),
                    "replication_delay": state.replication_delay,
                    "tokens": state.tokens.count(),
                }),
            )
        }
        (&Method::POST, "/_emulator/faults") => {
            let bytes = match read_body(body, 64 * 1024).await {
                Ok(bytes) => bytes,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            match serde_json::from_slice::<Fault>(&bytes) {
                Ok(fault) => match apply(core, fault) {
                    Ok(()) => ok(),
                    Err((status, message)) => error(status, &message),
                },
                Err(e) => error(StatusCode::BAD_REQUEST, &format!("invalid fault: {e}")),
            }
        }
        (&Method::GET, "/_emulator/runners") => {
            let runners: Vec<_> = core
                .lock()
                .runners
                .list
                .iter()
                .map(|r| r.to_json())
                .collect();
            json(StatusCode::OK, &j!({ "runners": runners }))
        }
        (&Method::POST, "/_emulator/runners") => {
            let bytes = match read_body(body, 64 * 1024).await {
                Ok(bytes) => bytes,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            let action = match serde_json::from_slice(&bytes) {
                Ok(action) => action,
                Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid action: {e}")),
            };
            let now = core.clock.unix();
            match crate::runners::apply(&mut core.lock().runners, action, now) {
                Ok(runner) => json(StatusCode::OK, &j!({ "ok": true, "runner": runner })),
                Err((status, message)) => error(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                    &message,
                ),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "unknown admin route"),
    }
}

fn ok() -> Response<Body> {
    json(StatusCode::OK, &j!({ "ok": true }))
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &j!({ "ok": false, "error": message }))
}

/// Applies one fault.
pub fn apply(core: &Core, fault: Fault) -> Result<(), (StatusCode, String)> {
    let now = core.clock.unix();
    let mut state = core.lock();
    match fault {
        Fault::Status {
            route,
            status,
            retry_after,
            times,
            message,
            server,
        } => {
            let status = StatusCode::from_u16(status)
                .ok()
                .filter(|s| s.as_u16() >= 200)
                .ok_or((StatusCode::BAD_REQUEST, format!("invalid status {status}")))?;
            state.faults.add(RouteFault {
                route,
                server,
                remaining: times,
                action: Action::Status {
                    status,
                    retry_after,
                    message,
                },
            });
        }
        Fault::Latency {
            route,
            ms,
            times,
            server,
        } => {
            state.faults.add(RouteFault {
                route,
                server,
                remaining: times,
                action: Action::Latency(Duration::from_millis(ms)),
            });
        }
        Fault::Drop {
            route,
            times,
            server,
        } => {
            state.faults.add(RouteFault {
                route,
                server,
                remaining: times,
                action: Action::Drop,
            });
        }
        Fault::ClockOffset { secs } => core.clock.set_offset(secs),
        Fault::ReplicationDelay { secs } => state.replication_delay = secs,
        Fault::Suspend { installation } | Fault::Unsuspend { installation } => {
            let suspend = matches!(fault, Fault::Suspend { .. });
            let inst = state.installations.live.get_mut(&installation).ok_or((
                StatusCode::NOT_FOUND,
                format!("no live installation {installation}"),
            ))?;
            inst.suspended_at = if suspend {
                Some(inst.suspended_at.unwrap_or(now))
            } else {
                None
            };
            inst.updated_at = now;
        }
        Fault::Uninstall { installation } => {
            let inst = state.installations.live.remove(&installation).ok_or((
                StatusCode::NOT_FOUND,
                format!("no live installation {installation}"),
            ))?;
            state.installations.removed.insert(installation, inst);
            state.tokens.revoke_all(Some(installation));
        }
        Fault::Reinstall {
            installation,
            new_id,
        } => {
            let new_id = new_id.unwrap_or_else(|| {
                let live = state.installations.live.keys().max().copied().unwrap_or(0);
                let removed = state
                    .installations
                    .removed
                    .keys()
                    .max()
                    .copied()
                    .unwrap_or(0);
                live.max(removed) + 1
            });
            if state.installations.live.contains_key(&new_id) {
                return Err((
                    StatusCode::CONFLICT,
                    format!("installation {new_id} already exists"),
                ));
            }
            let mut inst = state
                .installations
                .live
                .remove(&installation)
                .or_else(|| state.installations.removed.remove(&installation))
                .ok_or((
                    StatusCode::NOT_FOUND,
                    format!("no installation {installation}"),
                ))?;
            state.tokens.revoke_all(Some(installation));
            inst.id = new_id;
            inst.suspended_at = None;
            inst.created_at = now;
            inst.updated_at = now;
            state.installations.live.insert(new_id, inst);
        }
        Fault::RevokeTokens { installation } => {
            state.tokens.revoke_all(installation);
        }
        Fault::Clear => {
            state.faults.clear();
            state.replication_delay = 0;
            core.clock.set_offset(0);
        }
        Fault::AddKey {
            app,
            private_key_out,
        } => {
            let fixture_key = app_key(core, app)?;
            let path = state_file(core, &private_key_out)?;
            if path.exists() {
                return Err((
                    StatusCode::CONFLICT,
                    format!("{private_key_out} already exists in the state dir"),
                ));
            }
            // Generating an RSA key takes a moment: not under the state lock.
            drop(state);
            let public = crate::keys::ensure_private_key(&path)
                .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
            let mut state = core.lock();
            state
                .app_keys
                .entry(app)
                .or_insert_with(|| vec![fixture_key])
                .push(public);
        }
        Fault::RemoveKey {
            app,
            private_key_file,
        } => {
            let fixture_key = app_key(core, app)?;
            let path = state_file(core, &private_key_file)?;
            if !path.is_file() {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("no {private_key_file} in the state dir"),
                ));
            }
            let public = crate::keys::ensure_private_key(&path)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e:#}")))?;
            let keys = state
                .app_keys
                .entry(app)
                .or_insert_with(|| vec![fixture_key]);
            if !keys.contains(&public) {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("{private_key_file} is not a key of App {app}"),
                ));
            }
            if keys.len() == 1 {
                return Err((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{private_key_file} is App {app}'s last key: add another first"),
                ));
            }
            keys.retain(|k| *k != public);
        }
    }
    Ok(())
}

/// The fixture public key of App `app`, or 404.
fn app_key(core: &Core, app: u64) -> Result<Vec<u8>, (StatusCode, String)> {
    core.apps
        .get(&app)
        .map(|a| a.public_key_der.clone())
        .ok_or((StatusCode::NOT_FOUND, format!("no App {app}")))
}

/// A bare file name in the state dir (no directories, no `..`), or 400.
fn state_file(core: &Core, name: &str) -> Result<std::path::PathBuf, (StatusCode, String)> {
    let bare = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if !bare {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("{name:?} must be a bare file name in the state dir"),
        ));
    }
    Ok(core.state_dir.join(name))
}
