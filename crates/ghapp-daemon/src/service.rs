//! What the daemon needs from the token broker, as a trait: the server is written against it,
//! [`ghapp_broker::Broker`] implements it, and tests put a fake behind it to exercise the
//! socket, routes and limits without GitHub.

use ghapp_broker::{
    Broker, BrokerError, BrokerMetrics, BrokerStatus, Config, JitRunner, SelfHostedRunner,
};
use ghapp_protocol::api::{RunnerTokenResponse, TokenQuery, TokenResponse};
use std::future::Future;

/// The broker's operations the daemon serves. Implementations are shared by every connection,
/// hence `Send + Sync + 'static`, and their futures must be `Send` to run on tokio's pool.
pub trait TokenService: Send + Sync + 'static {
    /// A token for the query (cached or minted); see [`Broker::token`].
    fn token<'a>(
        &'a self,
        query: &'a TokenQuery,
    ) -> impl Future<Output = Result<TokenResponse, BrokerError>> + Send + 'a;

    /// [`TokenService::token`], also telling whether the answer was minted for this request
    /// (what the per-identity mint limit counts). Services that cannot tell (test fakes) say
    /// `false`: nothing is charged.
    fn token_served<'a>(
        &'a self,
        query: &'a TokenQuery,
    ) -> impl Future<Output = Result<(TokenResponse, bool), BrokerError>> + Send + 'a {
        async move { self.token(query).await.map(|token| (token, false)) }
    }

    /// Drops the cached entry holding exactly this token; true if there was one.
    fn invalidate(&self, token: &str) -> bool;

    /// A runner registration (or removal) token for an organization.
    fn runner_token<'a>(
        &'a self,
        host: &'a str,
        org: &'a str,
        remove: bool,
    ) -> impl Future<Output = Result<RunnerTokenResponse, BrokerError>> + Send + 'a;

    /// A runner registration (or removal) token for one repository; see
    /// [`Broker::repository_runner_token`]. Services that have no repository runners (test
    /// fakes) answer that they cannot.
    fn repository_runner_token<'a>(
        &'a self,
        host: &'a str,
        owner: &'a str,
        repo: &'a str,
        remove: bool,
    ) -> impl Future<Output = Result<RunnerTokenResponse, BrokerError>> + Send + 'a {
        let _ = (host, remove);
        async move {
            Err(BrokerError::unprocessable(format!(
                "this service issues no repository runner tokens ({owner}/{repo})"
            )))
        }
    }

    /// The self-hosted runners of an organization (or of `repo`); see
    /// [`Broker::list_runners`]. Services without runners (test fakes) answer that they cannot.
    fn list_runners<'a>(
        &'a self,
        host: &'a str,
        owner: &'a str,
        repo: Option<&'a str>,
    ) -> impl Future<Output = Result<Vec<SelfHostedRunner>, BrokerError>> + Send + 'a {
        let _ = (host, owner, repo);
        async move { Err(no_runners()) }
    }

    /// One self-hosted runner; see [`Broker::get_runner`].
    fn get_runner<'a>(
        &'a self,
        host: &'a str,
        owner: &'a str,
        repo: Option<&'a str>,
        id: u64,
    ) -> impl Future<Output = Result<Option<SelfHostedRunner>, BrokerError>> + Send + 'a {
        let _ = (host, owner, repo, id);
        async move { Err(no_runners()) }
    }

    /// Deletes a self-hosted runner; see [`Broker::delete_runner`].
    fn delete_runner<'a>(
        &'a self,
        host: &'a str,
        owner: &'a str,
        repo: Option<&'a str>,
        id: u64,
    ) -> impl Future<Output = Result<bool, BrokerError>> + Send + 'a {
        let _ = (host, owner, repo, id);
        async move { Err(no_runners()) }
    }

    /// Registers a just-in-time runner; see [`Broker::generate_jitconfig`].
    fn generate_jitconfig<'a>(
        &'a self,
        host: &'a str,
        owner: &'a str,
        repo: Option<&'a str>,
        request: &'a ghapp_runners::JitRequest,
    ) -> impl Future<Output = Result<JitRunner, BrokerError>> + Send + 'a {
        let _ = (host, owner, repo, request);
        async move { Err(no_runners()) }
    }

    /// Applies a reloaded config, keeping cached tokens that remain valid.
    fn reload(&self, config: &Config) -> Result<(), BrokerError>;

    /// What is held, without secrets.
    fn status(&self) -> BrokerStatus;

    /// Counters and histograms.
    fn metrics(&self) -> BrokerMetrics;

    /// Stops background work.
    fn shutdown(&self);
}

/// What a service without runner management answers.
fn no_runners() -> BrokerError {
    BrokerError::unprocessable("this service manages no self-hosted runners")
}

impl TokenService for Broker {
    fn token<'a>(
        &'a self,
        query: &'a TokenQuery,
    ) -> impl Future<Output = Result<TokenResponse, BrokerError>> + Send + 'a {
        Broker::token(self, query)
    }

    fn token_served<'a>(
        &'a self,
        query: &'a TokenQuery,
    ) -> impl Future<Output = Result<(TokenResponse, bool), BrokerError>> + Send + 'a {
        Broker::token_served(self, query)
    }

    fn invalidate(&self, token: &str) -> bool {
        Broker::invalidate(self, token)
    }

    fn runner_token<'a>(
        &'a self,
        host: &'a str,
        org: &'a str,
        remove: bool,
    ) -> impl Future<Output = Result<RunnerTokenResponse, BrokerError>> + Send + 'a {
        Broker::runner_token(self, host, org, remove)
    }

    fn repository_runner_token<'a>(
        &'a self,
        host: &'a str,
        owner: &'a str,
        repo: &'a str,
        remove: bool,
    ) -> impl Future<Output = Result<RunnerTokenResponse, BrokerError>> + Send + 'a {
        Broker::repository_runner_token(self, host, owner, repo, remove)
    }

    fn list_runners<'a>(
        &'a self,
        host: &'a str,
        owner: &'a str,
        repo: Option<&'a str>,
    ) -> impl Future<Output = Result<Vec<SelfHostedRunner>, BrokerError>> + Send + 'a {
        Broker::list_runners(self, host, owner, repo)
    }

    fn get_runner<'a>(
        &'a self,
        host: &'a str,
        owner: &'a str,
        repo: Option<&'a str>,
        id: u64,
    ) -> impl Future<Output = Result<Option<SelfHostedRunner>, BrokerError>> + Send + 'a {
        Broker::get_runner(self, host, owner, repo, id)
    }

    fn delete_runner<'a>(
        &'a self,
        host: &'a str,
        owner: &'a str,
        repo: Option<&'a str>,
        id: u64,
    ) -> impl Future<Output = Result<bool, BrokerError>> + Send + 'a {
        Broker::delete_runner(self, host, owner, repo, id)
    }

    fn generate_jitconfig<'a>(
        &'a self,
        host: &'a str,
        owner: &'a str,
        repo: Option<&'a str>,
        request: &'a ghapp_runners::JitRequest,
    ) -> impl Future<Output = Result<JitRunner, BrokerError>> + Send + 'a {
        Broker::generate_jitconfig(
            self,
            host,
            owner,
            repo,
            &request.name,
            request.runner_group_id,
            &request.labels,
            &request.work_folder,
        )
    }

    fn reload(&self, config: &Config) -> Result<(), BrokerError> {
        Broker::reload(self, config)
    }

    fn status(&self) -> BrokerStatus {
        Broker::status(self)
    }

    fn metrics(&self) -> BrokerMetrics {
        Broker::metrics(self)
    }

    fn shutdown(&self) {
        Broker::shutdown(self)
    }
}
