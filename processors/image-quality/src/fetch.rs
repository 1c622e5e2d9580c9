//! Downloads of sellers' image URLs: the only network I/O of the check.
//!
//! Every download is bounded four ways, so no host can hold a slot or memory for long:
//! - a connect timeout, a timeout on each wait for the next bytes, and a deadline on the whole
//!   download (a server that trickles a byte a second ends at the deadline);
//! - a size cap: a declared `Content-Length` over it is refused unread, and a body that grows
//!   past it is abandoned at the first byte over;
//! - a per-host rate limit (governor, keyed by host), so one seller's slow or broken host
//!   cannot be hammered by a burst of uploads, and a well-behaved host is not either;
//! - optionally ([`FetchPolicy::block_private_networks`]), no loopback, private, link-local
//!   or unspecified address, by literal or by DNS answer.
//!
//! Failures are classified once, here ([`FetchError::retryable`]): what a later attempt can
//! fix (timeouts, refused connections, 5xx, 408, 429) is retried by the caller; what it cannot
//! (a malformed URL, 404, 403, …) is answered at once.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use events::images::ImageErrorKind;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use reqwest::Url;
use topology::ImageQualityParams;

/// The limits of one download, from the processor's parameters.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub download_timeout: Duration,
    pub max_bytes: u64,
    pub block_private_networks: bool,
}

impl FetchPolicy {
    pub fn from_params(p: &ImageQualityParams) -> Self {
        Self {
            connect_timeout: Duration::from_millis(p.connect_timeout_ms),
            read_timeout: Duration::from_millis(p.read_timeout_ms),
            download_timeout: Duration::from_millis(p.download_timeout_ms),
            max_bytes: p.max_bytes,
            block_private_networks: p.block_private_networks,
        }
    }
}

/// A finished download.
#[derive(Debug)]
pub struct Downloaded {
    pub bytes: Vec<u8>,
    /// The response's `Content-Type`, if it sent one.
    pub content_type: Option<String>,
    pub elapsed: Duration,
}

/// Why a download did not give an image's bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchError {
    /// Worth another attempt later.
    Retryable {
        kind: ImageErrorKind,
        detail: String,
    },
    /// Another attempt cannot help (the URL or the resource is wrong).
    Permanent {
        kind: ImageErrorKind,
        detail: String,
    },
    /// Larger than the cap: the image is rejected TOO_LARGE, not retried.
    TooLarge { detail: String },
}

impl FetchError {
    pub fn retryable(&self) -> bool {
        matches!(self, FetchError::Retryable { .. })
    }

    pub fn kind(&self) -> ImageErrorKind {
        match self {
            FetchError::Retryable { kind, .. } | FetchError::Permanent { kind, .. } => *kind,
            FetchError::TooLarge { .. } => ImageErrorKind::HttpStatus,
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            FetchError::Retryable { detail, .. }
            | FetchError::Permanent { detail, .. }
            | FetchError::TooLarge { detail } => detail,
        }
    }
}

/// The downloader of one processor instance: one HTTP client (its connection pool) and one
/// per-host limiter, shared by every check in flight.
pub struct Fetcher {
    client: reqwest::Client,
    policy: FetchPolicy,
    hosts: DefaultKeyedRateLimiter<String>,
}

impl Fetcher {
    pub fn new(policy: FetchPolicy, host_rate_per_sec: u32, host_burst: u32) -> Self {
        let rate = NonZeroU32::new(host_rate_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(host_burst).unwrap_or(NonZeroU32::MIN);
        let client = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .read_timeout(policy.read_timeout)
            .timeout(policy.download_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!(
                "storefleet-image-quality/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .expect("the HTTP client's settings are valid");
        Self {
            client,
            policy,
            hosts: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// Downloads `url` within the policy's bounds.
    pub async fn fetch(&self, url: &str) -> Result<Downloaded, FetchError> {
        let started = Instant::now();
        let parsed = parse_url(url)?;
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        if self.policy.block_private_networks {
            check_public(&parsed).await?;
        }
        // Forget hosts idle for a while so the limiter's map does not grow without bound.
        if self.hosts.len() > 10_000 {
            self.hosts.retain_recent();
        }
        self.hosts.until_key_ready(&host).await;
        let deadline = started + self.policy.download_timeout;
        let mut response = self
            .client
            .get(parsed)
            .send()
            .await
            .map_err(|e| classify(&e, url))?;
        let status = response.status();
        if !status.is_success() {
            let detail = format!("GET {url} answered HTTP {}", status.as_u16());
            let code = status.as_u16();
            return Err(if status.is_server_error() || code == 408 || code == 429 {
                FetchError::Retryable {
                    kind: ImageErrorKind::HttpStatus,
                    detail,
                }
            } else {
                FetchError::Permanent {
                    kind: ImageErrorKind::HttpStatus,
                    detail,
                }
            });
        }
        let cap = self.policy.max_bytes;
        if let Some(len) = response.content_length().filter(|&len| len > cap) {
            return Err(FetchError::TooLarge {
                detail: format!("{url} declares {len} bytes, over the {cap}-byte cap"),
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes =
            Vec::with_capacity(response.content_length().unwrap_or(64 * 1024).min(cap) as usize);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = match tokio::time::timeout(left, response.chunk()).await {
                Err(_) => {
                    return Err(FetchError::Retryable {
                        kind: ImageErrorKind::Timeout,
                        detail: format!(
                            "{url}: body not complete after {} ms ({} bytes read)",
                            self.policy.download_timeout.as_millis(),
                            bytes.len()
                        ),
                    })
                }
                Ok(Err(e)) => return Err(classify(&e, url)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            if bytes.len() as u64 + chunk.len() as u64 > cap {
                return Err(FetchError::TooLarge {
                    detail: format!("{url}: body passed the {cap}-byte cap"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Downloaded {
            bytes,
            content_type,
            elapsed: started.elapsed(),
        })
    }
}

/// `url` as an absolute http(s) URL with a host, or why not.
pub fn parse_url(url: &str) -> Result<Url, FetchError> {
    let invalid = |why: String| FetchError::Permanent {
        kind: ImageErrorKind::InvalidUrl,
        detail: why,
    };
    let parsed = Url::parse(url).map_err(|e| invalid(format!("{url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "{url:?}: scheme {} (only http and https are fetched)",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("{url:?} has no host")));
    }
    Ok(parsed)
}

/// Refuses a URL whose host is, or resolves to, an address of the fleet's own networks.
/// The check resolves once and the client resolves again: a host that changes its answer in
/// between gets through (DNS rebinding); production puts the fetcher behind an egress proxy
/// for that.
async fn check_public(url: &Url) -> Result<(), FetchError> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses: Vec<IpAddr> = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| FetchError::Retryable {
                kind: ImageErrorKind::Connection,
                detail: format!("resolving {host}: {e}"),
            })?
            .map(|a| a.ip())
            .collect(),
    };
    if let Some(ip) = addresses.iter().find(|ip| !is_public(ip)) {
        return Err(FetchError::Permanent {
            kind: ImageErrorKind::InvalidUrl,
            detail: format!("{url}: host {host} is {ip}, a private address (not fetched)"),
        });
    }
    Ok(())
}

fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| !is_public(&IpAddr::V4(v4))))
        }
    }
}

fn classify(e: &reqwest::Error, url: &str) -> FetchError {
    let chain = runtime::error_chain(e);
    if e.is_timeout() {
        FetchError::Retryable {
            kind: ImageErrorKind::Timeout,
            detail: format!("{url}: timed out ({chain})"),
        }
    } else if e.is_builder() {
        FetchError::Permanent {
            kind: ImageErrorKind::InvalidUrl,
            detail: format!("{url}: {chain}"),
        }
    } else if e.is_redirect() {
        FetchError::Permanent {
            kind: ImageErrorKind::HttpStatus,
            detail: format!("{url}: too many redirects ({chain})"),
        }
    } else {
        FetchError::Retryable {
            kind: ImageErrorKind::Connection,
            detail: format!("{url}: {chain}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_http_with_a_host() {
        assert!(parse_url("http://127.0.0.1:9/a.jpg").is_ok());
        assert!(parse_url("https://img.example/a.jpg").is_ok());
        for bad in [
            "",
            "a.jpg",
            "ftp://host/a.jpg",
            "file:///etc/passwd",
            "http://",
        ] {
            let e = parse_url(bad).expect_err(bad);
            assert_eq!(e.kind(), ImageErrorKind::InvalidUrl, "{bad}");
            assert!(!e.retryable(), "{bad}");
        }
    }

    #[test]
    fn private_addresses_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "100.64.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(&private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(is_public(&public.parse().unwrap()), "{public}");
        }
    }
}
