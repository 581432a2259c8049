//! How the observation documents are mapped in OpenSearch: the reference demo's fields
//! (index `visits_observation_stats`) in one table, and dynamic templates by path or
//! suffix for everything else, so a new observer's figures (`metrics.*`), a new watched
//! field (`invalid_*`, `quality.*.*`) or a new partition need no change here.

use serde_json::{json, Map, Value};
use tidewatch_engine::opensearch::OpenSearchConfig;

/// The reference demo's index names, the defaults of `opensearch.*_index`.
pub const DEFAULT_INDICES: [(&str, &str); 3] =
    [("stats", "visits_observation_stats"), ("alerts", "visits_observation_alerts"), ("profiles", "visits_observation_profiles")];

/// `config` with the reference's index names where it names none.
pub fn with_default_indices(config: &OpenSearchConfig) -> OpenSearchConfig {
    let mut config = config.clone();
    for (index, (_, default)) in [&mut config.stats_index, &mut config.alerts_index, &mut config.profiles_index].into_iter().zip(DEFAULT_INDICES) {
        if index.is_empty() {
            default.clone_into(index);
        }
    }
    config
}

/// The documents' fixed fields and their types: the reference's first, then tidewatch's.
pub const FIELDS: &[(&str, &str)] = &[
    // The reference demo's stats document.
    ("@timestamp", "date"),
    ("all_events", "long"),
    ("lag_per_partition", "object"),
    // tidewatch's additions.
    ("window_start_ms", "epoch_millis"),
    ("window_end_ms", "epoch_millis"),
    ("unparseable", "long"),
    ("not_object", "long"),
    ("tombstones", "long"),
    ("max_lag", "long"),
    ("max_lag_seconds", "double"),
    ("records_in", "long"),
    ("records_delivered", "long"),
    ("lag_seconds_per_partition", "object"),
    ("status_per_partition", "object"),
    // Alert transitions.
    ("since", "date"),
    ("value", "double"),
    ("threshold", "double"),
];

/// Dynamic templates: `(name, path or name pattern, JSON type it applies to, mapped type)`.
/// `path:` patterns match the dotted path of a leaf, others its name.
const DYNAMIC: &[(&str, &str, Option<&str>, &str)] = &[
    // The reference's `invalid_<field>` per watched field.
    ("invalid", "invalid_*", None, "long"),
    ("lag_seconds", "path:lag_seconds_per_partition.*", None, "double"),
    ("lag_offsets", "path:lag_per_partition.*", None, "long"),
    ("status", "path:status_per_partition.*", None, "keyword"),
    ("quality", "path:quality.*.*", Some("long"), "long"),
    ("observers", "path:observers.*", Some("long"), "long"),
    // Every figure of the observers on the protocol, at any depth of labels.
    ("figures", "path:metrics.*", Some("double"), "double"),
    ("figures_whole", "path:metrics.*", Some("long"), "double"),
    ("strings", "*", Some("string"), "keyword"),
];

/// The index template's `mappings` for the observation indices.
pub fn observation_mappings() -> Value {
    let dynamic: Vec<Value> = DYNAMIC
        .iter()
        .map(|(name, pattern, json_type, mapped)| {
            let mut rule = Map::new();
            match pattern.strip_prefix("path:") {
                Some(path) => rule.insert("path_match".to_owned(), json!(path)),
                None if *pattern != "*" => rule.insert("match".to_owned(), json!(pattern)),
                None => None,
            };
            if let Some(t) = json_type {
                rule.insert("match_mapping_type".to_owned(), json!(t));
            }
            rule.insert("mapping".to_owned(), json!({ "type": mapped }));
            json!({ *name: rule })
        })
        .collect();
    let properties: Map<String, Value> = FIELDS
        .iter()
        .map(|(field, kind)| {
            let mapping = match *kind {
                "epoch_millis" => json!({ "type": "date", "format": "epoch_millis" }),
                other => json!({ "type": other }),
            };
            ((*field).to_owned(), mapping)
        })
        .collect();
    json!({ "dynamic_templates": dynamic, "properties": properties })
}

#[cfg(test)]
mod tests {
    use super::observation_mappings;

    #[test]
    fn every_dynamic_rule_has_a_pattern_and_a_type() {
        let mappings = observation_mappings();
        let rules = mappings["dynamic_templates"].as_array().map(Vec::len).unwrap_or(0);
        assert!(rules >= 8);
        assert_eq!(mappings["properties"]["window_start_ms"]["format"], "epoch_millis");
        assert_eq!(mappings["dynamic_templates"][6]["figures"]["path_match"], "metrics.*");
        assert_eq!(mappings["dynamic_templates"][6]["figures"]["match_mapping_type"], "double");
    }
}
