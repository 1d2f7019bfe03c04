//! The browser client's files: served from `STATIC_DIR` only, symlinks
//! included only while they stay inside it, and every answer with the
//! security headers.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use testkit::spawn_app_with;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One raw HTTP/1.0 request, so the path reaches the server exactly as
/// written (no client normalizes `..`). Status, lower-cased header lines,
/// body.
async fn raw_get(port: u16, path: &str) -> (u16, Vec<(String, String)>, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sent");
    let mut answer = Vec::new();
    tokio::time::timeout(testkit::WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[actix_web::test]
async fn a_symlink_out_of_the_static_folder_is_not_followed() {
    let outside = TempDir::new().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOP SECRET").unwrap();
    let site = TempDir::new().unwrap();
    let root = site.path();
    std::fs::write(root.join("index.html"), "<p>the page</p>").unwrap();
    std::fs::write(root.join("app.css"), "body {}").unwrap();
    symlink("app.css", root.join("alias.css")).unwrap();
    symlink(outside.path().join("secret.txt"), root.join("secret.txt")).unwrap();
    symlink(outside.path(), root.join("elsewhere")).unwrap();
    let app = spawn_app_with(|c| c.static_dir = root.to_path_buf()).await;

    let (status, _, body) = raw_get(app.port, "/").await;
    assert_eq!((status, body.as_str()), (200, "<p>the page</p>"));
    let (status, _, body) = raw_get(app.port, "/app.css").await;
    assert_eq!((status, body.as_str()), (200, "body {}"));
    // A link that stays inside is served.
    let (status, _, body) = raw_get(app.port, "/alias.css").await;
    assert_eq!((status, body.as_str()), (200, "body {}"));

    // Links out of the folder, to a file or a folder, are a plain 404, the
    // same answer as a file that does not exist.
    let (missing_status, _, missing) = raw_get(app.port, "/nothing.txt").await;
    assert_eq!(missing_status, 404);
    for path in ["/secret.txt", "/elsewhere/secret.txt", "/elsewhere/"] {
        let (status, _, body) = raw_get(app.port, path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("TOP SECRET"), "{path}: {body}");
        assert_eq!(
            body.replace(path, "PATH"),
            missing.replace("/nothing.txt", "PATH"),
            "{path} answers like a missing file"
        );
    }

    // `..` never leaves the folder, as before.
    for path in [
        "/../secret.txt",
        "/elsewhere/../../secret.txt",
        "/..%2fsecret.txt",
    ] {
        let (status, _, body) = raw_get(app.port, path).await;
        assert!(status == 404 || status == 400, "{path}: {status} {body}");
        assert!(!body.contains("TOP SECRET"), "{path}: {body}");
    }
}

#[actix_web::test]
async fn the_page_its_assets_and_the_api_carry_the_security_headers() {
    let app = spawn_app_with(|_| {}).await;
    for path in [
        "/",
        "/js/main.js",
        "/app.css",
        "/health",
        "/api/rooms",
        "/nothing.txt",
    ] {
        let (status, headers, _) = raw_get(app.port, path).await;
        assert!(status == 200 || status == 404, "{path}: {status}");
        let csp = header(&headers, "content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no Content-Security-Policy header"));
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("object-src 'none'"), "{path}: {csp}");
        assert_eq!(
            header(&headers, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            header(&headers, "referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        // The page's modules are many files: after an upgrade a browser
        // must ask again (cheaply, by ETag) rather than mix old and new.
        assert_eq!(
            header(&headers, "cache-control"),
            Some("no-cache"),
            "{path}"
        );
    }
}

/// The files under `dir` whose names end in `.{ext}`, in every subfolder.
fn files_ending(dir: &Path, ext: &str, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            files_ending(&path, ext, found);
        } else if path.extension().is_some_and(|e| e == ext) {
            found.push(path);
        }
    }
}

/// The page's script is ES modules in a subfolder. A browser refuses a
/// module whose type is not JavaScript (and `nosniff` forbids guessing),
/// and one module that does not load leaves a blank page: every script in
/// `static/` is served as it is with a JavaScript type, and every file the
/// page names (its script, the modules it preloads, its stylesheet) is there.
#[actix_web::test]
async fn every_script_of_the_page_is_served_as_javascript() {
    let app = spawn_app_with(|_| {}).await;
    let root = testkit::static_dir();
    let mut scripts = Vec::new();
    files_ending(&root, "js", &mut scripts);
    assert!(
        scripts.iter().any(|p| p.ends_with("js/main.js")),
        "{scripts:?}"
    );
    for file in &scripts {
        let path = format!("/{}", file.strip_prefix(&root).unwrap().display());
        let (status, headers, body) = raw_get(app.port, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let kind = header(&headers, "content-type").unwrap_or("none");
        assert!(
            kind.starts_with("text/javascript") || kind.starts_with("application/javascript"),
            "{path} is served as {kind}, which a browser refuses to run as a module"
        );
        assert_eq!(body, std::fs::read_to_string(file).unwrap(), "{path}");
    }

    let page = std::fs::read_to_string(root.join("index.html")).unwrap();
    let named: Vec<&str> = ["src=\"", "href=\""]
        .iter()
        .flat_map(|attr| page.split(attr).skip(1))
        .filter_map(|rest| rest.split('"').next())
        .filter(|target| !target.starts_with("data:"))
        .collect();
    assert!(named.contains(&"js/main.js"), "{named:?}");
    for target in named {
        let (status, _, body) = raw_get(app.port, &format!("/{target}")).await;
        assert_eq!(status, 200, "index.html names {target}: {body}");
    }
}
