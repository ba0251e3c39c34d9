//! Container images: `docker save` tarballs (a `manifest.json` beside the
//! layers) and OCI image layouts (`oci-layout`, `index.json`,
//! `blobs/sha256/…`), as a tarball or a directory. Their layers are tar
//! archives (most gzip-compressed) that `archive.rs` expands like any other
//! nested archive, every layer in turn; their manifests and configs are JSON
//! files scanned as text (an image config's `Env` is a common place for a
//! key). What this module adds is the layer's name in a finding's path:
//!
//! - an OCI blob `blobs/sha256/<hex>` is `layer sha256:<hex>`:
//!   `image.tar!layer sha256:<hex>!/app/.env`, and for a layout directory
//!   `img!layer sha256:<hex>!/app/.env`;
//! - a layer of the older docker-save format, `<id>/layer.tar`, is
//!   `layer <id>`: `image.tar!layer <id>!/app/.env`.
//!
//! The digest is the one `docker inspect` and `crane` print, so a finding
//! leads to the layer (and the Dockerfile step) that added the file. A file
//! a later layer deletes (a `.wh.` whiteout) is still in the image and is
//! reported from the layer that holds it.

/// The display path of an archive that is an image layer, renamed for its
/// layer: `x!/blobs/sha256/<hex>` → `x!layer sha256:<hex>` (also a blob
/// file on disk, `img/blobs/sha256/<hex>` → `img!layer sha256:<hex>`), and
/// `x!/<id>/layer.tar` → `x!layer <id>`. `None` for any other path.
pub fn layer_path(path: &str) -> Option<String> {
    if let Some((before, hex)) = split_hex_tail(path) {
        if let Some(owner) = before.strip_suffix("blobs/sha256/") {
            let owner = match owner {
                "" => "",
                o => o.strip_suffix("!/").or_else(|| o.strip_suffix('/'))?,
            };
            return Some(join(owner, &format!("layer sha256:{hex}")));
        }
    }
    let dir = path.strip_suffix("/layer.tar")?;
    let (before, id) = split_hex_tail(dir)?;
    let owner = before.strip_suffix("!/")?;
    Some(join(owner, &format!("layer {id}")))
}

/// `path` split before its last 64 characters when they are lowercase hex
/// (a sha256 digest).
fn split_hex_tail(path: &str) -> Option<(&str, &str)> {
    let cut = path.len().checked_sub(64)?;
    let hex = path.get(cut..)?;
    let digest = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    digest.then(|| (&path[..cut], hex))
}

fn join(owner: &str, layer: &str) -> String {
    match owner {
        "" => layer.to_string(),
        o => format!("{o}!{layer}"),
    }
}

#[cfg(test)]
mod tests {
    use super::layer_path;

    const HEX: &str = "ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34";

    #[test]
    fn layers_are_named_by_digest() {
        assert_eq!(
            layer_path(&format!("image.tar!/blobs/sha256/{HEX}")),
            Some(format!("image.tar!layer sha256:{HEX}"))
        );
        assert_eq!(
            layer_path(&format!("img/blobs/sha256/{HEX}")),
            Some(format!("img!layer sha256:{HEX}"))
        );
        assert_eq!(
            layer_path(&format!("blobs/sha256/{HEX}")),
            Some(format!("layer sha256:{HEX}"))
        );
        assert_eq!(
            layer_path(&format!("old.tar!/{HEX}/layer.tar")),
            Some(format!("old.tar!layer {HEX}"))
        );
    }

    #[test]
    fn other_paths_keep_their_names() {
        assert_eq!(layer_path("a.zip!/lib/b.jar"), None);
        assert_eq!(layer_path(&format!("x!/myblobs/sha256/{HEX}")), None);
        assert_eq!(layer_path(&format!("x!/blobs/sha256/{}", &HEX[1..])), None);
        assert_eq!(
            layer_path(&format!("x!/blobs/sha256/{}", HEX.to_uppercase())),
            None
        );
        assert_eq!(layer_path("x!/app/layer.tar"), None);
        // Not the last 64 bytes on a char boundary: no panic, no layer.
        assert_eq!(layer_path(&"é".repeat(40)), None);
    }
}
