//! Backend tests whose server URL is unset are compiled as ignored, with the
//! variable to set as the reason, so `cargo test` counts them as ignored
//! rather than passed. With `CI` set nothing is ignored: a missing URL then
//! fails the tests (`db::server_url`), as CI must not skip a backend.

use std::env;

const SERVERS: [(&str, &str); 3] = [
    ("STATEFOLD_TEST_POSTGRES_URL", "statefold_no_postgres_url"),
    ("STATEFOLD_TEST_MYSQL_URL", "statefold_no_mysql_url"),
    ("STATEFOLD_TEST_NATS_URL", "statefold_no_nats_url"),
];

fn main() {
    println!("cargo::rerun-if-env-changed=CI");
    let ci = env::var_os("CI").is_some();
    for (var, cfg) in SERVERS {
        println!("cargo::rerun-if-env-changed={var}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        let unset = env::var(var).map_or(true, |url| url.is_empty());
        if unset && !ci {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
