//! The storefront's parameters as `topology.yaml` gives them: the search replicas.

use topology::StorefrontParams;

fn parse(yaml: &str) -> Result<StorefrontParams, serde_yaml::Error> {
    serde_yaml::from_str(yaml)
}

#[test]
fn search_replicas_default_to_none_and_each_must_be_an_http_url() {
    let p = StorefrontParams::default();
    assert!(p.search_urls.is_empty());
    assert_eq!(p.validate(), Ok(()));
    let p = parse("search_urls: [\"http://127.0.0.1:9400\", \"https://search.example\"]").unwrap();
    assert_eq!(p.search_urls.len(), 2);
    assert_eq!(p.validate(), Ok(()));
    let p = parse("search_urls: [\"http://a:1\", \"ftp://b\", \"http://\"]").unwrap();
    let problems = p.validate().unwrap_err();
    assert!(
        problems.contains("search_urls[1] \"ftp://b\""),
        "{problems}"
    );
    assert!(problems.contains("search_urls[2]"), "{problems}");
    assert!(!problems.contains("search_urls[0]"), "{problems}");
}

#[test]
fn the_former_recommendations_url_is_refused_not_ignored() {
    let e = parse("recommendations_url: \"http://127.0.0.1:9500\"").unwrap_err();
    assert!(e.to_string().contains("recommendations_url"), "{e}");
}

#[test]
fn the_former_single_search_url_is_refused_not_ignored() {
    let e = parse("search_url: \"http://127.0.0.1:9400\"").unwrap_err();
    assert!(e.to_string().contains("search_url"), "{e}");
}
