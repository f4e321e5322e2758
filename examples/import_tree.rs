//! `import_tree REPO TREE [THREADS]`: write TREE's objects into the repository REPO (no
//! commit) as the network installer's seed does (`slipway install --seed`), and print what
//! was written and how long it took, as JSON. For measuring the seed outside a VM.

use std::path::PathBuf;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.len() > 3 {
        anyhow::bail!("usage: import_tree REPO TREE [THREADS]");
    }
    let threads = args.get(2).map(|t| t.parse()).transpose()?.unwrap_or(0);
    let started = Instant::now();
    let imported = slipway::repo::commit::import_tree(
        &PathBuf::from(&args[0]),
        &PathBuf::from(&args[1]),
        threads,
    )?;
    let mut v = serde_json::to_value(&imported)?;
    v["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
    println!("{v}");
    Ok(())
}
