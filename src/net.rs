//! TCP and TLS for the mail connections: one stream type for plain and TLS,
//! rustls with verified certificates (system roots, or the operator's CA
//! file), and error messages that say how to fix a refused certificate.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("timed out connecting to {0}")]
    ConnectTimeout(String),
    #[error("cannot read CA file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("no trusted root certificates found on this system; set ca_file")]
    NoRoots,
    #[error("`{0}` is not a valid TLS server name")]
    ServerName(String),
    #[error("TLS handshake with {addr} failed: {message}")]
    Tls { addr: String, message: String },
}

/// Builds the TLS client configuration. With `ca_file`, only that CA is
/// trusted (the usual case for a private mail server); otherwise the
/// system's roots.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, NetError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_err = |message: String| NetError::CaFile {
                path: path.display().to_string(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| ca_err(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_err("no PEM certificate in it".to_string()));
            }
            for c in certs {
                roots.add(c).map_err(|e| ca_err(e.to_string()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for c in native.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(NetError::NoRoots);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls {
            addr: String::new(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub async fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, NetError> {
    let addr = format!("{host}:{port}");
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Err(_) => Err(NetError::ConnectTimeout(addr)),
        Ok(Err(source)) => Err(NetError::Connect { addr, source }),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// Wraps a TCP stream in TLS, verifying the certificate against `host`.
pub async fn tls_wrap(
    tcp: TcpStream,
    host: &str,
    port: u16,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, NetError> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| NetError::ServerName(host.to_string()))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            let mut message = e.to_string();
            if message.contains("certificate") {
                message.push_str(
                    "; the server's certificate is not trusted: set ca_file to the CA that signed it, \
                     or fix the certificate (ticketd never falls back to an unverified connection)",
                );
            }
            NetError::Tls {
                addr: format!("{host}:{port}"),
                message,
            }
        })
}

/// A mail connection, plain or TLS, as one type for async-imap.
#[derive(Debug)]
pub enum MailStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MailStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MailStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl lettre::transport::smtp::client::AsyncTokioStream for MailStream {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            MailStream::Plain(s) => s.peer_addr(),
            MailStream::Tls(s) => s.get_ref().0.peer_addr(),
        }
    }
}
