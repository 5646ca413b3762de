//! `crdgen`: writes the CRD YAML of every robofleet kind to `deploy/crds/<plural>.<group>.yaml` and
//! the CRD reference to `docs/reference/crds.md`. Paths are relative to the working directory (run
//! it from the repository root, as `make generate` does) unless given:
//!
//! ```text
//! crdgen [--out-dir deploy/crds] [--docs docs/reference/crds.md] [--copy-to DIR]... [--check]
//! ```
//!
//! `--copy-to` writes the same CRD files to another directory too (e.g. `charts/robofleet/crds`,
//! which Helm installs on first install). `--check` writes nothing and exits 1 if a file would
//! change.

use std::path::PathBuf;
use std::process::ExitCode;

use robofleet_crds::generate;

struct Args {
    out_dir: PathBuf,
    docs: PathBuf,
    copies: Vec<PathBuf>,
    check: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        out_dir: PathBuf::from("deploy/crds"),
        docs: PathBuf::from("docs/reference/crds.md"),
        copies: Vec::new(),
        check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out-dir" => args.out_dir = it.next().ok_or("--out-dir needs a directory")?.into(),
            "--docs" => args.docs = it.next().ok_or("--docs needs a file")?.into(),
            "--copy-to" => args
                .copies
                .push(it.next().ok_or("--copy-to needs a directory")?.into()),
            "--check" => args.check = true,
            "-h" | "--help" => {
                return Err("usage: crdgen [--out-dir deploy/crds] [--docs docs/reference/crds.md] [--copy-to DIR]... [--check]".into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

fn run(args: &Args) -> Result<bool, String> {
    let crds = generate::crds();
    let mut files = Vec::new();
    for crd in &crds {
        let yaml = generate::to_yaml(crd).map_err(|e| e.to_string())?;
        for dir in args.copies.iter().chain([&args.out_dir]) {
            files.push((dir.join(generate::file_name(crd)), yaml.clone()));
        }
    }
    files.push((
        args.docs.clone(),
        generate::reference_markdown(&crds).map_err(|e| e.to_string())?,
    ));
    let mut stale = false;
    for (path, content) in files {
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(content.as_str()) {
            continue;
        }
        stale = true;
        if args.check {
            eprintln!("stale: {}", path.display());
            continue;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        std::fs::write(&path, content).map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(stale)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(stale) if args.check && stale => {
            eprintln!("generated files are stale: run make generate");
            ExitCode::from(1)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("crdgen: {msg}");
            ExitCode::from(1)
        }
    }
}
