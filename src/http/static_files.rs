//! The browser client's files at `/`, and the security headers every answer
//! carries.
//!
//! actix-files refuses `..` and `%2F` in a request path, but follows
//! symlinks wherever they point: a link in `STATIC_DIR` to `/etc/passwd`
//! would serve it. So a file is served only when its real path (every
//! symlink resolved) stays inside the real `STATIC_DIR`. Links inside it
//! that point inside it still work. Anything else answers the same 404 as a
//! file that does not exist, so a refusal says nothing about what is on the
//! disk.

use std::io;
use std::path::{Path, PathBuf};

use actix_files::Files;
use actix_web::dev::{fn_service, ServiceRequest, ServiceResponse};
use actix_web::middleware::DefaultHeaders;
use actix_web::ResponseError;

use super::error::ApiError;

/// Served for a folder (`/` is the page itself).
const INDEX: &str = "index.html";

/// Only the page's own files run and load (no inline script, no other
/// origins; its ES modules and their imports are same-origin files, which
/// `script-src`, falling back to `default-src 'self'`, allows), and no
/// other site may frame it (`frame-ancestors` works only
/// as a header, never in a `<meta>` tag).
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The policy above, with the origin of TOKEN_REFRESH_URL added to
/// `connect-src` when it is on another origin (an `http(s)://` URL; a path
/// is on the page's own): the page must be allowed to fetch its tokens
/// there, and nowhere else.
pub(crate) fn content_security_policy(token_refresh_url: Option<&str>) -> String {
    let origin = token_refresh_url.and_then(|url| {
        let (scheme, rest) = url.split_once("://")?;
        let host = rest.split(['/', '?', '#']).next()?;
        Some(format!("{scheme}://{host}"))
    });
    match origin {
        Some(origin) => CONTENT_SECURITY_POLICY.replace(
            "connect-src 'self' ws: wss:",
            &format!("connect-src 'self' ws: wss: {origin}"),
        ),
        None => CONTENT_SECURITY_POLICY.to_string(),
    }
}

/// The headers added to every response (the page, its assets, the JSON API,
/// errors): the CSP above, no MIME sniffing (a JSON body or a user's text is
/// never run as script), and no `Referer` leaving the page (its address may
/// have carried a `#token=`, and room names are nobody else's business).
/// `csp` is [`content_security_policy`]'s.
pub(crate) fn security_headers(csp: &str) -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Content-Security-Policy", csp.to_string()))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "no-referrer"))
        // Revalidate every time (an ETag makes that cheap): the page is
        // many module files, and a browser that kept some from before an
        // upgrade would run old and new together.
        .add(("Cache-Control", "no-cache"))
}

/// The real path of `STATIC_DIR`, resolved once at start-up.
pub(crate) fn resolve(dir: &Path) -> io::Result<PathBuf> {
    dir.canonicalize()
}

/// The `Files` service for `root` (from [`resolve`]), confined to it.
pub(crate) fn service(root: &Path) -> Files {
    let confined = root.to_path_buf();
    Files::new("/", root)
        .index_file(INDEX)
        .path_filter(move |path, _| stays_inside(&confined, path))
        .default_handler(fn_service(|req: ServiceRequest| async {
            let (req, _) = req.into_parts();
            let response =
                ApiError::NotFound(format!("no such file: {}", req.path())).error_response();
            Ok(ServiceResponse::new(req, response))
        }))
}

/// Whether `relative` (already free of `..`) names something whose real
/// path is inside `root` (itself canonical). A folder's index file is
/// opened after this check, so it must stay inside too. A path that does
/// not exist is refused here; it would be a 404 anyway.
fn stays_inside(root: &Path, relative: &Path) -> bool {
    let inside = |path: PathBuf| path.canonicalize().is_ok_and(|real| real.starts_with(root));
    let full = root.join(relative);
    if !inside(full.clone()) {
        return false;
    }
    let index = full.join(INDEX);
    !full.is_dir() || !index.exists() || inside(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn only_real_paths_inside_the_folder_pass() {
        let outside = tempfile::TempDir::new().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        let dir = tempfile::TempDir::new().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("index.html"), "page").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), "a").unwrap();
        symlink("index.html", root.join("alias.html")).unwrap();
        symlink("sub", root.join("alias-dir")).unwrap();
        symlink(outside.path().join("secret.txt"), root.join("leak.txt")).unwrap();
        symlink(outside.path(), root.join("leak-dir")).unwrap();
        // A folder whose index file points out.
        std::fs::create_dir(root.join("trap")).unwrap();
        symlink(
            outside.path().join("secret.txt"),
            root.join("trap/index.html"),
        )
        .unwrap();

        for ok in [
            "",
            "index.html",
            "sub",
            "sub/a.txt",
            "alias.html",
            "alias-dir/a.txt",
        ] {
            assert!(stays_inside(&root, Path::new(ok)), "{ok} should pass");
        }
        for refused in [
            "leak.txt",
            "leak-dir",
            "leak-dir/secret.txt",
            "trap",
            "missing.txt",
        ] {
            assert!(
                !stays_inside(&root, Path::new(refused)),
                "{refused} should not pass"
            );
        }
    }
}

#[cfg(test)]
mod csp_tests {
    use super::*;

    #[test]
    fn the_refresh_urls_origin_and_only_it_is_added_to_connect_src() {
        assert_eq!(content_security_policy(None), CONTENT_SECURITY_POLICY);
        assert_eq!(
            content_security_policy(Some("/auth/token")),
            CONTENT_SECURITY_POLICY
        );
        let csp = content_security_policy(Some("https://id.example.com:8443/chat/token?x=1"));
        assert!(
            csp.contains("connect-src 'self' ws: wss: https://id.example.com:8443;"),
            "{csp}"
        );
        assert!(!csp.contains("/chat/token"), "{csp}");
    }
}
