//! Prints ocusers' nftables ruleset (`ocusers::firewall::render`, the code
//! `add` and `remove` use) for N synthetic tenants, blocks of 128 ports from
//! 20000, uids from 2000, with a two-entry allow-list and a local resolver.
//! For bench/firewall_load.sh: `cargo run --example firewall_ruleset -- 200`.
use ocusers::config::AllowLocal;
use ocusers::firewall::{Inputs, TenantRule, render};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let tenants = (0..n)
        .map(|i| {
            // 200 blocks of 128 do not fit below 32768; the bench does not
            // care where the ports are, only that the blocks do not overlap.
            let first = 20000 + 128 * i;
            TenantRule {
                name: format!("t{i}"),
                first_port: u16::try_from(first).expect("ports"),
                last_port: u16::try_from(first + 127).expect("ports"),
                uid: 2000 + i,
            }
        })
        .collect();
    let inputs = Inputs {
        tenants,
        allow: vec![
            AllowLocal::parse("127.0.0.1:11434").expect("entry"),
            AllowLocal::parse("tcp/[::1]:8080").expect("entry"),
        ],
        resolvers: vec!["127.0.0.53".parse().expect("address")],
    };
    print!("{}", render(&inputs));
}
