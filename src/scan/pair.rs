//! Two-part keys: a rule's `pair:` names the rule that finds the key's
//! partner (an AWS key id's secret, a Twilio SID's token, an exchange key's
//! secret). After a chunk is scanned, each finding of such a rule gets the
//! nearest partner found within `within` lines attached to its secret, so a
//! verify template can sign or authenticate with both (`{{pair}}`).

use super::finding::Finding;
use crate::rules::RuleSet;
use std::collections::HashMap;

/// Rule id → (partner rule id, lines).
#[derive(Debug, Default)]
pub struct Pairs(HashMap<String, (String, u64)>);

impl Pairs {
    pub fn new(rules: &RuleSet) -> Pairs {
        Pairs(
            rules
                .rules()
                .iter()
                .filter_map(|r| {
                    let p = r.spec.pair.as_ref()?;
                    Some((r.spec.id.clone(), (p.rule.clone(), u64::from(p.within))))
                })
                .collect(),
        )
    }

    /// Attaches partners to the findings of one chunk.
    pub fn attach(&self, findings: &mut [Finding]) {
        if self.0.is_empty() {
            return;
        }
        for i in 0..findings.len() {
            let Some((partner, within)) = self.0.get(&*findings[i].rule_id) else {
                continue;
            };
            let f = &findings[i];
            let nearest = findings
                .iter()
                .filter(|p| {
                    *p.rule_id == **partner
                        && p.secret != f.secret
                        && p.line.abs_diff(f.line) <= *within
                })
                .min_by_key(|p| (p.line.abs_diff(f.line), p.offset.abs_diff(f.offset)))
                .map(|p| p.secret.clone());
            if let Some(partner) = nearest {
                let secret = findings[i].secret.clone().with_pair(partner);
                findings[i].secret = secret;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleSet;
    use crate::scan::{Allowlist, Chunk, Origin, Scanner};

    const RULES: &str = r#"
rules:
  - id: ex.key
    name: Example key
    provider: ex
    keywords: [exkey_]
    pattern: '(?P<secret>exkey_[a-z0-9]{16})'
    pair: {rule: ex.secret, within: 2}
  - id: ex.secret
    name: Example secret
    provider: ex
    keywords: [exsec_]
    pattern: '(?P<secret>exsec_[a-z0-9]{16})'
"#;

    fn scan(text: &str) -> Vec<(String, Option<String>)> {
        let mut set = RuleSet::default();
        set.add_file(std::path::Path::new("ex.yaml"), RULES)
            .unwrap();
        let scanner = Scanner::new(&set, Allowlist::default()).unwrap();
        let origin = Origin::File {
            path: "a.env".into(),
        };
        let chunk = Chunk::whole(origin, text.as_bytes().to_vec());
        scanner
            .scan(&chunk)
            .into_iter()
            .filter(|f| &*f.rule_id == "ex.key")
            .map(|f| {
                let pair = f.secret.pair().map(|p| p.expose().to_string());
                (f.secret.expose().to_string(), pair)
            })
            .collect()
    }

    #[test]
    fn the_nearest_partner_within_reach_is_attached() {
        let text = "exsec_far0000000000000\n\n\n\nexsec_aaaa1111bbbb2222\nexkey_k1k1k1k1k1k1k1k1\n\nexsec_cccc3333dddd4444\n";
        assert_eq!(
            scan(text),
            [(
                "exkey_k1k1k1k1k1k1k1k1".to_string(),
                Some("exsec_aaaa1111bbbb2222".to_string())
            )]
        );
        // Too far: the key is reported without a partner.
        let far = "exkey_k1k1k1k1k1k1k1k1\n\n\n\nexsec_aaaa1111bbbb2222\n";
        assert_eq!(scan(far), [("exkey_k1k1k1k1k1k1k1k1".to_string(), None)]);
    }
}
