//! `flaky_server`: serves one file on 127.0.0.1 for `bench/download.sh`, cutting the connection
//! after N body bytes for the first K requests (paths under /missing: 404). `GET /__stats` answers the requests seen and the
//! body bytes sent. A benchmark tool: it must not be used as a real server.

mod server;

use std::path::PathBuf;

fn usage() -> ! {
    eprintln!("usage: flaky_server --file PATH [--port P] [--cut-after BYTES --cuts K]");
    std::process::exit(2)
}

fn main() {
    let mut file = None;
    let mut port = 0u16;
    let mut cut_after = 0u64;
    let mut cuts = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--file" => file = Some(PathBuf::from(value())),
            "--port" => port = value().parse().unwrap_or_else(|_| usage()),
            "--cut-after" => cut_after = value().parse().unwrap_or_else(|_| usage()),
            "--cuts" => cuts = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let Some(file) = file else { usage() };
    let content = server::Content::file(file).unwrap_or_else(|e| {
        eprintln!("flaky_server: {e}");
        std::process::exit(1)
    });
    let script = vec![server::Fault::Cut(cut_after); cuts];
    let srv = server::Server::start(content, script, port).unwrap_or_else(|e| {
        eprintln!("flaky_server: {e}");
        std::process::exit(1)
    });
    println!("{}", srv.port());
    loop {
        std::thread::park();
    }
}
