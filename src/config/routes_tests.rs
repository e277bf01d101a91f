//! Route validation: each refused policy names its key and says why.

use crate::config::parse;
use crate::config::tests::errors;

#[test]
fn internal_route_without_secrets_is_refused() {
    let e = errors("[[route]]\npath = \"/_rpc\"\nauth = \"internal\"\n");
    assert!(
        e[0].contains("needs at least one [[internal_secrets]]"),
        "{e:?}"
    );
}

#[test]
fn scopes_on_a_route_that_refuses_oauth2_are_refused() {
    let e = errors("[[route]]\npath = \"/x\"\nkinds = [\"session\"]\nscopes = [\"identify\"]\n");
    assert!(e[0].contains("scopes only apply to oauth2"), "{e:?}");
}

#[test]
fn route_names_default_to_methods_and_pattern() {
    let c = parse(
        "[[route]]\nmethods = [\"GET\", \"POST\"]\npath = \"/a/:id\"\nauth = \"none\"\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.live.routes.routes()[0].name, "GET,POST /a/:id");
}
