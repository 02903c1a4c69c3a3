use super::*;
use std::collections::HashMap;

#[test]
fn limits_and_bind_are_written_in_drop_in_order() {
    let limits = Limits {
        memory_high: 1 << 30,
        memory_max: 2 << 30,
        cpu_quota_per_sec_usec: 500_000,
        tasks_max: 256,
    };
    let bind = SocketBind {
        allow: vec![PortRange {
            first: 10_000,
            last: 10_127,
        }],
        deny: vec![PortRange {
            first: 10_000,
            last: 60_999,
        }],
    };
    let props = limits_and_bind_props(&limits, &bind);
    // The file systemd writes for each, as in the golden
    // tests/golden/system.control-openclaw@alice.service.d.txt.
    let files: Vec<String> = props
        .iter()
        .map(|(p, _)| match p.as_str() {
            "CPUQuotaPerSecUSec" => "50-CPUQuota.conf".to_string(),
            p => format!("50-{p}.conf"),
        })
        .collect();
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted, "written out of drop-in order");
    sorted.dedup();
    assert_eq!(
        sorted,
        [
            "50-CPUQuota.conf",
            "50-MemoryHigh.conf",
            "50-MemoryMax.conf",
            "50-SocketBindAllow.conf",
            "50-SocketBindDeny.conf",
            "50-TasksMax.conf"
        ]
    );
    let value = |name: &str| {
        props
            .iter()
            .rev()
            .find(|(p, _)| p == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(u64::try_from(value("CPUQuotaPerSecUSec")).unwrap(), 500_000);
    assert_eq!(u64::try_from(value("MemoryMax")).unwrap(), 2 << 30);
    assert_eq!(u64::try_from(value("TasksMax")).unwrap(), 256);
    let mut m = HashMap::new();
    m.insert("SocketBindAllow".to_string(), value("SocketBindAllow"));
    assert_eq!(bind_items(&m, "SocketBindAllow"), bind.allow);
}
