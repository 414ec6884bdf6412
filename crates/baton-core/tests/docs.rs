//! README.md's policy reference names every field of the evaluation context.

use baton_core::expr::Type;
use baton_core::policy::base_schema;

fn names(prefix: &str, ty: &Type, out: &mut Vec<String>) {
    if let Type::Object(o) = ty {
        for (k, (t, _)) in &o.fields {
            let full = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.push(full.clone());
            names(&full, t, out);
        }
    }
}

#[test]
fn readme_documents_every_context_field() {
    let readme = include_str!("../../../README.md");
    let reference = readme
        .split("### Policy reference")
        .nth(1)
        .expect("README has a policy reference");
    let mut all = Vec::new();
    names("", &base_schema().into_type(), &mut all);
    for full in all {
        let last = full.rsplit('.').next().unwrap_or(&full);
        let mentioned = [
            format!("`{last}`"),
            format!("`{full}`"),
            format!(".{last}`"),
            format!("`{last}."),
            format!(".{last}("),
        ]
        .iter()
        .any(|m| reference.contains(m.as_str()));
        assert!(
            mentioned,
            "README's policy reference does not mention {full}"
        );
    }
}
