//! `baton serve` and `baton keys create`: the server over a store chosen by URL.

use std::path::PathBuf;

use anyhow::Context;
use baton_server::{App, Engine, key_hash};
use baton_store::{PgStore, SqliteStore, Store};

/// Where Baton keeps its state: the flags `serve` and `keys` share.
#[derive(Debug, clap::Args)]
pub struct StorageArgs {
    /// Directory for the embedded SQLite database (`baton.db`).
    #[arg(long, default_value = "./baton-data")]
    data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://...`); when given, the data directory is not used.
    #[arg(long, env = "BATON_DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    storage: StorageArgs,
    /// The policy file; it becomes the active version. Default: the active version stored by
    /// an earlier start or `PUT /v1/policy`, else the built-in copy of examples/policy.toml.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Turns kept in memory, in the conversations decided on lately, so that a turn is decided
    /// without reading its conversation back (about 2.0 KB each). The store stays the truth.
    #[arg(long, default_value_t = baton_server::DEFAULT_CACHED_TURNS)]
    cache_turns: u64,
    /// A team file: `[[rep]]` tables (`id` and the attributes of `PUT /v1/reps/{id}`), stored
    /// at start; reps not in it are left as they are, presences are not changed.
    #[arg(long)]
    team: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it once; only its hash is stored.
    Create {
        #[arg(long)]
        name: String,
        /// `bot` for chatbots and integrations, `admin` for operators, `rep` for a rep (whose id
        /// is the key's name: it may act on that rep's offers and conversations only).
        #[arg(long, value_parser = ["bot", "admin", "rep"])]
        role: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

pub const DEFAULT_POLICY: &str = include_str!("../../../examples/policy.toml");

/// The policy to serve: the file given, else the stored active version, else the built-in
/// default. Whichever it is becomes (or stays) the stored active version, so every decision's
/// policy hash names a stored text.
async fn choose_policy<S: Store>(store: &S, path: Option<&PathBuf>) -> anyhow::Result<Engine> {
    let (name, text) = match path {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => match store
            .active_policy()
            .await
            .context("reading the active policy")?
        {
            Some(row) => (format!("stored policy {}", row.hash), row.body),
            None => (
                "examples/policy.toml (built in)".to_string(),
                DEFAULT_POLICY.to_string(),
            ),
        },
    };
    let engine = Engine::load(&name, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let active = store
        .active_policy()
        .await
        .context("reading the active policy")?;
    if active.is_none_or(|row| row.hash != engine.policy.hash) {
        store
            .activate_policy(
                &engine.policy.hash,
                &text,
                &jiff::Timestamp::now().to_string(),
            )
            .await
            .context("storing the policy version")?;
    }
    eprintln!("baton: policy {name} (sha256 {})", engine.policy.hash);
    Ok(engine)
}

/// The backend a URL names.
pub enum StoreChoice {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

async fn open(storage: &StorageArgs) -> anyhow::Result<StoreChoice> {
    match &storage.database_url {
        Some(url) => {
            let s = PgStore::connect(url)
                .await
                .with_context(|| "connecting to PostgreSQL")?;
            s.migrate().await.context("running PostgreSQL migrations")?;
            Ok(StoreChoice::Postgres(s))
        }
        None => {
            std::fs::create_dir_all(&storage.data_dir)
                .with_context(|| format!("creating {}", storage.data_dir.display()))?;
            let s = SqliteStore::open(&storage.data_dir.join("baton.db"))
                .await
                .context("opening the SQLite database")?;
            s.migrate().await.context("running SQLite migrations")?;
            Ok(StoreChoice::Sqlite(s))
        }
    }
}

async fn serve_with<S: Store>(store: S, args: &ServeArgs) -> anyhow::Result<()> {
    let engine = choose_policy(&store, args.policy.as_ref()).await?;
    if let Some(path) = &args.team {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let team = baton_core::routing::parse_team(&text, &engine.policy.calendars)
            .map_err(|errors| anyhow::anyhow!("{}: {}", path.display(), errors.join("; ")))?;
        let now = jiff::Timestamp::now();
        for (id, rep) in &team {
            let attrs = serde_json::to_string(rep).context("writing a rep")?;
            store
                .put_rep(id, &attrs, now.as_millisecond(), &now.to_string())
                .await
                .context("storing a rep")?;
        }
        eprintln!("baton: team {} ({} reps)", path.display(), team.len());
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!("baton: serving on http://{}", listener.local_addr()?);
    let app = App::with_cache(store, engine, args.cache_turns);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    baton_server::run(listener, app, shutdown)
        .await
        .context("serving")?;
    Ok(())
}

pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    // Logs go to standard error; RUST_LOG tunes them (default: info).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    // Workers look at the runtime's global queue before their own at every task, not every
    // few dozen: the store's writer (every turn waits for its group commit) is woken there
    // by SQLite's thread, and while both workers decided turns it waited its turn behind
    // them. Measured in five interleaved pairs of 10-12 s wrk runs: 0.5-10% more turns a
    // second (BENCHMARKS.md).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .global_queue_interval(1)
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        match open(&args.storage).await? {
            StoreChoice::Sqlite(s) => serve_with(s, args).await,
            StoreChoice::Postgres(s) => serve_with(s, args).await,
        }
    })
}

async fn create_key_with<S: Store>(store: S, name: &str, role: &str) -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom_fill(&mut bytes)?;
    let key = format!(
        "bt_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    store
        .create_key(
            &key_hash(&key),
            name,
            role,
            &jiff::Timestamp::now().to_string(),
        )
        .await
        .context("storing the key")?;
    Ok(key)
}

/// Fills `buf` from the operating system's random source.
fn getrandom_fill(buf: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .context("reading /dev/urandom")
}

pub fn keys(cmd: &KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Create {
        name,
        role,
        storage,
    } = cmd;
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let key = rt.block_on(async {
        match open(storage).await? {
            StoreChoice::Sqlite(s) => create_key_with(s, name, role).await,
            StoreChoice::Postgres(s) => create_key_with(s, name, role).await,
        }
    })?;
    println!("{key}");
    eprintln!("baton: created {role} key {name:?}; it is shown once, store it now");
    Ok(())
}
