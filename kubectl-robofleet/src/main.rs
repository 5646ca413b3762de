//! `kubectl robofleet`: a readable live view of InferenceService rollouts and the one-shot rollout
//! verbs. Verbs are annotations (`robofleet.io/action: <verb>@<nonce>`) the operator acknowledges
//! in `status.lastAction`; the plugin never writes spec or status, so the RBAC that allows a verb
//! is the RBAC on patching the object (the chart's admission policy narrows it to holders of the
//! custom verb).

mod view;

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use robofleet_crds::annotations;
use robofleet_crds::{InferenceService, SafetyPolicy};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-robofleet",
    bin_name = "kubectl robofleet",
    version,
    about = "Watch and steer robofleet model rollouts"
)]
struct Cli {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Rollout status of one InferenceService, or a table of all of them.
    Status {
        /// InferenceService name (all in the namespace when omitted).
        name: Option<String>,
        /// Keep printing on every change.
        #[arg(short, long)]
        watch: bool,
    },
    /// Pause the rollout (the git-visible way is `spec.paused: true`).
    Pause(Verb),
    /// Resume a rollout paused by `pause` (not one paused by `spec.paused`).
    Resume(Verb),
    /// Skip the current wave's pause and analysis; `--full` goes to 100% at once.
    Promote {
        #[command(flatten)]
        verb: Verb,
        /// Promote to every robot now.
        #[arg(long)]
        full: bool,
    },
    /// Abort the rollout: updated robots return to the stable revision.
    Abort(Verb),
    /// Retry the aborted revision.
    Retry(Verb),
    /// SafetyPolicy: reset a latched stop on every robot of the policy.
    Reset(Verb),
}

#[derive(Debug, clap::Args)]
struct Verb {
    /// The resource's name.
    name: String,
    /// Wait this long for the operator's acknowledgement (0: do not wait).
    #[arg(long, default_value = "30s", value_parser = parse_secs)]
    wait: Duration,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    robofleet_crds::duration::parse(s).map_err(|e| e.to_string())
}

/// A nonce unique enough for one person's verbs: time in ms, base 36.
fn nonce() -> String {
    let mut n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut out = Vec::new();
    while n > 0 {
        let d = u8::try_from(n % 36).unwrap_or(0);
        out.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = kube::Config::infer()
        .await
        .context("no usable kubeconfig (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    let ns = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("building the Kubernetes client")?;
    let isvcs: Api<InferenceService> = Api::namespaced(client.clone(), &ns);
    match cli.command {
        Command::Status { name: None, watch } => loop {
            let items = isvcs.list(&ListParams::default()).await?.items;
            print_screen(&view::table(&items), watch);
            if !watch {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        },
        Command::Status {
            name: Some(name),
            watch: false,
        } => {
            let obj = isvcs
                .get(&name)
                .await
                .with_context(|| format!("InferenceService {ns}/{name}"))?;
            print!(
                "{}",
                view::render(&obj, k8s_openapi::jiff::Timestamp::now())
            );
            Ok(())
        }
        Command::Status {
            name: Some(name),
            watch: true,
        } => {
            let wc = watcher::Config::default().fields(&format!("metadata.name={name}"));
            let mut stream = std::pin::pin!(watcher(isvcs, wc).default_backoff().applied_objects());
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            let mut last: Option<InferenceService> = None;
            loop {
                tokio::select! {
                    ev = stream.next() => match ev {
                        Some(Ok(obj)) => last = Some(obj),
                        Some(Err(e)) => eprintln!("watch: {e}"),
                        None => return Ok(()),
                    },
                    // Re-render now and then so ages stay current.
                    _ = tick.tick() => {}
                }
                if let Some(obj) = &last {
                    let now = k8s_openapi::jiff::Timestamp::now();
                    print_screen(&view::render(obj, now), true);
                }
            }
        }
        Command::Pause(v) => act(&isvcs, "pause", &v).await,
        Command::Resume(v) => act(&isvcs, "resume", &v).await,
        Command::Promote { verb, full } => {
            act(&isvcs, if full { "promote-full" } else { "promote" }, &verb).await
        }
        Command::Abort(v) => act(&isvcs, "abort", &v).await,
        Command::Retry(v) => act(&isvcs, "retry", &v).await,
        Command::Reset(v) => {
            let policies: Api<SafetyPolicy> = Api::namespaced(client, &ns);
            act(&policies, "reset", &v).await
        }
    }
}

fn print_screen(text: &str, clear: bool) {
    if clear && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        print!("\x1b[H\x1b[2J");
    } else if clear {
        println!("---");
    }
    print!("{text}");
}

/// Reads `status.lastAction` of any robofleet kind.
fn last_action<K: serde::Serialize>(obj: &K) -> Option<String> {
    serde_json::to_value(obj)
        .ok()?
        .pointer("/status/lastAction")?
        .as_str()
        .map(str::to_owned)
}

async fn act<K>(api: &Api<K>, verb: &str, v: &Verb) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
    K::DynamicType: Default,
{
    let value = annotations::action(verb, &nonce());
    let patch = json!({"metadata": {"annotations": {annotations::ACTION: value}}});
    let obj = api
        .patch(&v.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("setting {}={value} on {}", annotations::ACTION, v.name))?;
    println!(
        "{} {}: {verb} requested ({value})",
        kind_of(&obj),
        obj.name_any()
    );
    if v.wait.is_zero() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + v.wait;
    loop {
        let obj = api.get(&v.name).await?;
        if last_action(&obj).as_deref() == Some(value.as_str()) {
            println!("acknowledged by the operator");
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "not acknowledged within {:?} (status.lastAction is {:?}); is the operator running?",
                v.wait,
                last_action(&obj)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn kind_of<K: kube::Resource>(_: &K) -> String
where
    K::DynamicType: Default,
{
    K::kind(&K::DynamicType::default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_lowercase_alphanumerics_and_parse_back() {
        let n = nonce();
        assert!(!n.is_empty());
        assert!(
            n.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        );
        let v = annotations::action("promote", &n);
        assert_eq!(annotations::parse_action(&v), Some(("promote", n.as_str())));
    }

    #[test]
    fn the_cli_maps_verbs_and_flags() {
        let cli = Cli::try_parse_from([
            "kubectl-robofleet",
            "-n",
            "fleet",
            "promote",
            "det",
            "--full",
        ])
        .expect("parses");
        assert_eq!(cli.namespace.as_deref(), Some("fleet"));
        assert!(matches!(cli.command, Command::Promote { full: true, .. }));
        let cli = Cli::try_parse_from(["kubectl-robofleet", "pause", "det", "--wait", "0s"])
            .expect("parses");
        assert!(
            matches!(cli.command, Command::Pause(Verb { ref name, wait }) if name == "det" && wait.is_zero())
        );
        assert!(
            Cli::try_parse_from(["kubectl-robofleet", "pause"]).is_err(),
            "name required"
        );
        let cli = Cli::try_parse_from(["kubectl-robofleet", "status", "--watch"]).expect("parses");
        assert!(matches!(
            cli.command,
            Command::Status {
                name: None,
                watch: true
            }
        ));
    }

    #[test]
    fn last_action_is_read_from_any_kind() {
        let p: SafetyPolicy = serde_json::from_value(json!({
            "apiVersion": "robofleet.io/v1alpha1", "kind": "SafetyPolicy",
            "metadata": {"name": "p"},
            "spec": {"source": {"topic": "/scan"}, "zones": [{"name": "z", "shape": "circle", "radius": 0.5, "action": "stop"}]},
            "status": {"lastAction": "reset@abc"}
        }))
        .expect("valid policy");
        assert_eq!(last_action(&p).as_deref(), Some("reset@abc"));
    }
}
