//! The simulator as a process, for the bench scripts: prints `listening on
//! http://127.0.0.1:PORT` as its first stdout line, then serves until killed.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

fn usage() -> String {
    let mut s = String::from(
        "keysentry-sim: simulated provider APIs for keysentry's tests and benchmarks\n\n\
         usage: keysentry-sim [--listen 127.0.0.1:0]\n\n\
         Prints `listening on http://ADDR` as its first line. Never expose it beyond loopback.\n\n\
         Control endpoints:\n",
    );
    for (endpoint, what) in keysentry_sim::CONTROL_ENDPOINTS {
        s.push_str(&format!("  {endpoint:<46} {what}\n"));
    }
    s
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut listen = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{}", usage());
                return ExitCode::SUCCESS;
            }
            "--listen" => match args.next() {
                Some(addr) => listen = addr,
                None => {
                    eprint!("error: --listen needs an address\n\n{}", usage());
                    return ExitCode::from(2);
                }
            },
            other => {
                eprint!("error: unknown argument {other:?}\n\n{}", usage());
                return ExitCode::from(2);
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: cannot read the listening address: {e}");
            return ExitCode::from(2);
        }
    };
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    match keysentry_sim::serve(listener).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
