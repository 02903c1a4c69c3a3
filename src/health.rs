//! Readiness of a tenant's gateway, from the gateway itself: `GET /readyz`
//! on its loopback port (200 ready, 503 with the failing checks while it
//! starts). "active" in systemd only means the process runs.
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum Readiness {
    Ready,
    /// Answering, but not ready: the status and the start of the body.
    NotReady(String),
    /// Nothing answers on the port.
    Unreachable(String),
    /// Not probed: only root may connect to a tenant's port (the firewall
    /// refuses everyone else, as it refuses other tenants).
    Unknown(String),
}

/// Why a command run as a normal user shows readiness as unknown.
pub const ONLY_ROOT: &str = "readiness is probed only as root (run the command with sudo)";

impl Readiness {
    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready)
    }

    /// Ready or not; None when not known.
    pub fn known(&self) -> Option<bool> {
        match self {
            Readiness::Unknown(_) => None,
            r => Some(r.is_ready()),
        }
    }
}

pub fn readyz_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/readyz")
}

/// Bytes a probe's connection buffers in each direction.
const PROBE_BUFFER: usize = 4096;

/// One probe; connecting, sending, and each of reading the answer's head
/// and its body are bounded by `timeout`. Per step, not `timeout_global`:
/// with a global timeout ureq resolves even `127.0.0.1` in a new thread, a
/// third of a probe's CPU and the largest part of `status` at 200 tenants.
pub fn probe(port: u16, timeout: Duration) -> Readiness {
    let t = Some(timeout);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(t)
        .timeout_send_request(t)
        .timeout_recv_response(t)
        .timeout_recv_body(t)
        .http_status_as_error(false)
        // ureq's 128 KiB a direction would be zeroed for every probe (51 MB
        // at 200 tenants in `status`); /readyz answers in a few hundred
        // bytes, and the input buffer grows if ever needed.
        .input_buffer_size(PROBE_BUFFER)
        .output_buffer_size(PROBE_BUFFER)
        .build()
        .into();
    match agent.get(&readyz_url(port)).call() {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            if status == 200 {
                Readiness::Ready
            } else {
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(4096)
                    .read_to_string()
                    .unwrap_or_default();
                let body: String = body.chars().take(200).collect();
                Readiness::NotReady(format!("HTTP {status} {}", body.trim()))
            }
        }
        Err(e) => Readiness::Unreachable(e.to_string()),
    }
}

/// Probe until ready or `deadline`; `still_running` is asked between probes
/// so a gateway that died is reported at once instead of at the deadline.
pub fn wait_ready(
    port: u16,
    deadline: Duration,
    mut still_running: impl FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = Readiness::Unreachable("not probed yet".into());
    while start.elapsed() < deadline {
        last = probe(port, Duration::from_secs(2));
        if last.is_ready() {
            return Ok(start.elapsed());
        }
        still_running()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(match last {
        Readiness::NotReady(d) | Readiness::Unreachable(d) | Readiness::Unknown(d) => d,
        Readiness::Ready => unreachable!(),
    })
}

/// Wait until the gateway behind `unit` answers ready on `port`, failing at
/// once if systemd reports the unit failed or stopped.
pub fn wait_unit_ready(
    sd: &dyn crate::systemd::Systemd,
    unit: &str,
    port: u16,
    timeout: Duration,
) -> Result<Duration, String> {
    wait_ready(port, timeout, || {
        let u = sd.unit(unit).map_err(|e| format!("{e:#}"))?;
        match u.active_state.as_str() {
            "failed" | "inactive" => Err(format!("{unit} is {} ({})", u.active_state, u.result)),
            _ => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn serve(responses: Vec<&'static str>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for resp in responses {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(resp.as_bytes());
            }
        });
        port
    }

    const READY: &str =
        "HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}";
    const STARTING: &str = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 28\r\nconnection: close\r\n\r\n{\"failing\":[\"startup-sidecars\"]}";

    #[test]
    fn probe_tells_ready_starting_and_down() {
        let port = serve(vec![READY, STARTING]);
        assert_eq!(probe(port, Duration::from_secs(2)), Readiness::Ready);
        let r = probe(port, Duration::from_secs(2));
        assert!(
            matches!(&r, Readiness::NotReady(d) if d.contains("503")),
            "{r:?}"
        );
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(matches!(
            probe(closed, Duration::from_secs(1)),
            Readiness::Unreachable(_)
        ));
    }

    #[test]
    fn probe_gives_up_on_a_gateway_that_never_answers() {
        // Accepts and reads, never writes: the head-read bound must end it.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            std::thread::sleep(Duration::from_secs(10));
        });
        let t = Instant::now();
        let r = probe(port, Duration::from_millis(300));
        assert!(matches!(r, Readiness::Unreachable(_)), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn wait_ready_waits_through_503_and_stops_on_death() {
        let port = serve(vec![STARTING, STARTING, READY]);
        assert!(wait_ready(port, Duration::from_secs(10), || Ok(())).is_ok());
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = wait_ready(
            closed,
            Duration::from_secs(10),
            || Err("unit failed".into()),
        );
        assert_eq!(err, Err("unit failed".to_string()));
    }
}
