//! Label selectors (`metav1.LabelSelector`), validated and normalised. `matchLabels` entries
//! become `In [value]` requirements and all requirements are sorted and deduplicated, so two
//! selectors that select the same set compare equal and hash alike: that is what lets every distinct
//! selector become exactly one policy group. Matching follows the API reference
//! (<https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors>):
//! requirements are ANDed; an empty selector matches everything. Immutable, `Send + Sync`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::error::Invalid;

/// Labels of an endpoint or namespace.
pub type Labels = BTreeMap<String, String>;

/// A selector operator (`LabelSelectorOperator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One requirement; `values` is sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Box<[String]>,
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            // Sorted values: binary search keeps wide `In` lists cheap.
            Operator::In => value.is_some_and(|v| self.values.binary_search(v).is_ok()),
            // NotIn matches when the key is absent, as upstream `labels.Requirement.Matches` does.
            Operator::NotIn => value.is_none_or(|v| self.values.binary_search(v).is_err()),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// A normalised label selector. The empty selector matches every label set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Selector {
    requirements: Box<[Requirement]>,
}

impl Selector {
    /// The selector that matches everything (`{}`).
    pub fn everything() -> Self {
        Self::default()
    }

    /// Selector from `key=value` pairs (matchLabels only).
    pub fn from_labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut reqs: Vec<Requirement> = pairs
            .into_iter()
            .map(|(k, v)| Requirement {
                key: k.to_owned(),
                operator: Operator::In,
                values: Box::new([v.to_owned()]),
            })
            .collect();
        reqs.sort();
        reqs.dedup();
        Self {
            requirements: reqs.into_boxed_slice(),
        }
    }

    /// Validates and normalises a k8s `LabelSelector`. `field` is the path used in errors; the
    /// error returned is the sub-path and reason.
    pub fn from_k8s(sel: &LabelSelector, field: &str) -> Result<Self, (String, Invalid)> {
        let mut reqs = Vec::new();
        if let Some(ml) = &sel.match_labels {
            for (k, v) in ml {
                check_key(k).map_err(|r| (format!("{field}.matchLabels"), r))?;
                check_value(v).map_err(|r| (format!("{field}.matchLabels[{k}]"), r))?;
                reqs.push(Requirement {
                    key: k.clone(),
                    operator: Operator::In,
                    values: Box::new([v.clone()]),
                });
            }
        }
        for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
            let at = format!("{field}.matchExpressions[{i}]");
            check_key(&e.key).map_err(|r| (format!("{at}.key"), r))?;
            let operator = match e.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err((
                        format!("{at}.operator"),
                        Invalid::UnsupportedOperator(other.to_owned()),
                    ));
                }
            };
            let values = e.values.as_deref().unwrap_or_default();
            match operator {
                Operator::In | Operator::NotIn if values.is_empty() => {
                    return Err((format!("{at}.values"), Invalid::ValuesRequired));
                }
                Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                    return Err((format!("{at}.values"), Invalid::ValuesForbidden));
                }
                _ => {}
            }
            for (j, v) in values.iter().enumerate() {
                check_value(v).map_err(|r| (format!("{at}.values[{j}]"), r))?;
            }
            let mut values = values.to_vec();
            values.sort();
            values.dedup();
            reqs.push(Requirement {
                key: e.key.clone(),
                operator,
                values: values.into_boxed_slice(),
            });
        }
        reqs.sort();
        reqs.dedup();
        Ok(Self {
            requirements: reqs.into_boxed_slice(),
        })
    }

    /// True when every requirement holds for `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True for `{}`.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Number of requirements (for statistics).
    pub fn len(&self) -> usize {
        self.requirements.len()
    }

    /// True for `{}` (same as [`Self::is_everything`]).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl core::fmt::Display for Selector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("{}");
        }
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r.operator {
                Operator::In if r.values.len() == 1 => write!(f, "{}={}", r.key, r.values[0])?,
                Operator::In => write!(f, "{} in ({})", r.key, r.values.join(","))?,
                Operator::NotIn => write!(f, "{} notin ({})", r.key, r.values.join(","))?,
                Operator::Exists => write!(f, "{}", r.key)?,
                Operator::DoesNotExist => write!(f, "!{}", r.key)?,
            }
        }
        Ok(())
    }
}

/// Label key: optional DNS-subdomain prefix and '/', then a name of at most 63 characters
/// (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set).
pub(crate) fn check_key(key: &str) -> Result<(), Invalid> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !s.starts_with('-')
                    && !s.ends_with('-')
            })
    });
    if prefix_ok && !name.is_empty() && is_label_name(name) {
        Ok(())
    } else {
        Err(Invalid::BadLabel(key.to_owned()))
    }
}

/// Label value: empty, or a name of at most 63 characters.
pub(crate) fn check_value(value: &str) -> Result<(), Invalid> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(Invalid::BadLabel(value.to_owned()))
    }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|v| (*v).to_owned()).collect())
            },
        }
    }

    #[test]
    fn match_labels_and_expressions_normalise_alike() {
        let a = Selector::from_k8s(
            &LabelSelector {
                match_labels: Some(labels(&[("app", "db")])),
                match_expressions: None,
            },
            "s",
        )
        .unwrap();
        let b = Selector::from_k8s(
            &LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![expr("app", "In", &["db", "db"])]),
            },
            "s",
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a, Selector::from_labels([("app", "db")]));
    }

    // Operators as described in the LabelSelectorRequirement API reference.
    #[test]
    fn operators() {
        let sel = |op: &str, vals: &[&str]| {
            Selector::from_k8s(
                &LabelSelector {
                    match_labels: None,
                    match_expressions: Some(vec![expr("tier", op, vals)]),
                },
                "s",
            )
            .unwrap()
        };
        let fe = labels(&[("tier", "frontend")]);
        let none = labels(&[("app", "x")]);
        assert!(sel("In", &["frontend", "cache"]).matches(&fe));
        assert!(!sel("In", &["cache"]).matches(&fe));
        assert!(!sel("In", &["frontend"]).matches(&none));
        assert!(!sel("NotIn", &["frontend"]).matches(&fe));
        assert!(sel("NotIn", &["frontend"]).matches(&none));
        assert!(sel("Exists", &[]).matches(&fe));
        assert!(!sel("Exists", &[]).matches(&none));
        assert!(sel("DoesNotExist", &[]).matches(&none));
        assert!(!sel("DoesNotExist", &[]).matches(&fe));
        assert!(Selector::everything().matches(&none));
    }

    #[test]
    fn bad_operator_and_values_are_rejected_with_field() {
        let bad = |e| {
            Selector::from_k8s(
                &LabelSelector {
                    match_labels: None,
                    match_expressions: Some(vec![e]),
                },
                "spec.podSelector",
            )
            .unwrap_err()
        };
        let (field, why) = bad(expr("a", "Equals", &["x"]));
        assert_eq!(field, "spec.podSelector.matchExpressions[0].operator");
        assert_eq!(why, Invalid::UnsupportedOperator("Equals".into()));
        assert_eq!(bad(expr("a", "In", &[])).1, Invalid::ValuesRequired);
        assert_eq!(bad(expr("a", "Exists", &["x"])).1, Invalid::ValuesForbidden);
        assert!(matches!(
            bad(expr("-a", "Exists", &[])).1,
            Invalid::BadLabel(_)
        ));
    }

    #[test]
    fn label_syntax() {
        assert!(check_key("kubernetes.io/metadata.name").is_ok());
        assert!(check_key("app").is_ok());
        assert!(check_key("Bad_Prefix/x").is_err());
        assert!(check_key("").is_err());
        assert!(check_value("").is_ok());
        assert!(check_value("a.b-c_d").is_ok());
        assert!(check_value("-x").is_err());
        assert!(check_value(&"x".repeat(64)).is_err());
    }
}
