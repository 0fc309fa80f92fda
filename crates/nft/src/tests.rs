use super::*;

fn base(hook: &str, rules: &[&str]) -> BaseChain {
    BaseChain {
        hook: hook.to_owned(),
        rules: rules.iter().map(|r| (*r).to_owned()).collect(),
    }
}

const HOOK: &str = "type filter hook forward priority filter; policy accept;";

/// A table with one of everything: a set, a map jumping to a chain, and a
/// base chain using both.
fn sample() -> Ruleset {
    let mut r = Ruleset::new("inet t");
    r.sets.insert(
        "s".into(),
        SetDef {
            typ: "ipv4_addr".into(),
            flags: vec!["interval".into()],
            elements: ["10.0.0.0/24".to_owned()].into(),
        },
    );
    r.maps.insert(
        "m".into(),
        MapDef {
            key_type: "ipv4_addr".into(),
            value_type: "verdict".into(),
            elements: [("10.0.0.1".to_owned(), "jump c".to_owned())].into(),
        },
    );
    r.chains.insert("c".into(), vec!["drop".into()]);
    r.base_chains.insert(
        "forward".into(),
        base(HOOK, &["ip saddr @s accept", "ip daddr vmap @m"]),
    );
    r
}

#[test]
fn full_render_replaces_the_table_with_base_chains_last() {
    let want = "table inet t {}\n\
                delete table inet t\n\
                table inet t {\n\
                \tset s {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.0.0.0/24 }\n\t}\n\
                \tchain c {\n\t\tdrop\n\t}\n\
                \tmap m {\n\t\ttype ipv4_addr : verdict\n\t\telements = { 10.0.0.1 : jump c }\n\t}\n\
                \tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\
                \t\tip saddr @s accept\n\t\tip daddr vmap @m\n\t}\n\
                }\n";
    assert_eq!(render_full(&sample()), want);
}

#[test]
fn empty_sets_render_without_elements() {
    let mut r = Ruleset::new("inet t");
    r.sets.insert("e".into(), SetDef::default());
    assert!(!render_full(&r).contains("elements"));
}

#[test]
fn equal_rulesets_have_no_delta() {
    assert_eq!(render_delta(&sample(), &sample()), None);
}

#[test]
fn element_changes_delete_before_adding() {
    let old = sample();
    let mut new = sample();
    new.sets.get_mut("s").unwrap().elements = ["10.0.0.0/16".to_owned()].into();
    new.maps
        .get_mut("m")
        .unwrap()
        .elements
        .insert("10.0.0.1".into(), "accept".into());
    assert_eq!(
        render_delta(&old, &new).unwrap(),
        "delete element inet t s { 10.0.0.0/24 }\n\
         add element inet t s { 10.0.0.0/16 }\n\
         delete element inet t m { 10.0.0.1 }\n\
         add element inet t m { 10.0.0.1 : accept }\n"
    );
}

#[test]
fn new_chains_exist_before_map_elements_jump_to_them() {
    let old = sample();
    let mut new = sample();
    new.chains.remove("c");
    new.chains.insert("d".into(), vec!["accept".into()]);
    new.maps
        .get_mut("m")
        .unwrap()
        .elements
        .insert("10.0.0.1".into(), "jump d".into());
    assert_eq!(
        render_delta(&old, &new).unwrap(),
        "add chain inet t d\n\
         delete element inet t m { 10.0.0.1 }\n\
         add element inet t m { 10.0.0.1 : jump d }\n\
         add rule inet t d accept\n\
         delete chain inet t c\n"
    );
}

#[test]
fn changed_rules_of_base_and_regular_chains_are_flushed_by_name() {
    let old = sample();
    let mut new = sample();
    new.chains.insert("c".into(), vec!["reject".into()]);
    new.chains.insert("z".into(), vec!["accept".into()]);
    new.base_chains.get_mut("forward").unwrap().rules = vec!["ip daddr vmap @m".into()];
    assert_eq!(
        render_delta(&old, &new).unwrap(),
        "add chain inet t z\n\
         add rule inet t z accept\n\
         flush chain inet t c\n\
         add rule inet t c reject\n\
         flush chain inet t forward\n\
         add rule inet t forward ip daddr vmap @m\n"
    );
}

#[test]
fn added_and_removed_sets_and_maps() {
    let old = sample();
    let mut new = sample();
    new.maps.remove("m");
    new.base_chains.get_mut("forward").unwrap().rules = vec![];
    new.sets.insert(
        "t".into(),
        SetDef {
            typ: "ipv4_addr".into(),
            flags: vec![],
            elements: ["10.0.0.9".to_owned()].into(),
        },
    );
    assert_eq!(
        render_delta(&old, &new).unwrap(),
        "add set inet t t { type ipv4_addr; }\n\
         add element inet t t { 10.0.0.9 }\n\
         flush chain inet t forward\n\
         delete map inet t m\n"
    );
}

#[test]
fn large_changes_are_chunked() {
    let old = sample();
    let mut new = sample();
    let set = new.sets.get_mut("s").unwrap();
    set.elements.clear();
    for i in 0..2500u32 {
        set.elements.insert(format!("10.1.{}.{}", i / 256, i % 256));
    }
    let delta = render_delta(&old, &new).unwrap();
    assert_eq!(delta.matches("add element inet t s").count(), 3);
    assert_eq!(delta.matches("delete element inet t s").count(), 1);
}

#[test]
fn what_cannot_change_in_place_is_a_full_replacement() {
    let full = |r: &Ruleset| Some(render_full(r));
    let old = sample();

    let mut retyped = sample();
    retyped.sets.get_mut("s").unwrap().flags.clear();
    assert_eq!(render_delta(&old, &retyped), full(&retyped));

    let mut remapped = sample();
    remapped.maps.get_mut("m").unwrap().key_type = "ipv6_addr".into();
    assert_eq!(render_delta(&old, &remapped), full(&remapped));

    let mut rehooked = sample();
    rehooked.base_chains.get_mut("forward").unwrap().hook = HOOK.replace("filter;", "-5;");
    assert_eq!(render_delta(&old, &rehooked), full(&rehooked));

    let mut more_base = sample();
    more_base.base_chains.insert(
        "input".into(),
        base("type filter hook input priority 0;", &[]),
    );
    assert_eq!(render_delta(&old, &more_base), full(&more_base));
    assert_eq!(render_delta(&more_base, &old), full(&old));

    let mut renamed = sample();
    renamed.table = "inet u".into();
    assert_eq!(render_delta(&old, &renamed), full(&renamed));
}

#[test]
fn stats_count_base_chains_too() {
    assert_eq!(
        sample().stats(),
        Stats {
            sets: 1,
            maps: 1,
            elements: 2,
            chains: 2,
            rules: 3,
        }
    );
}

#[test]
fn short_hash_is_16_hex_digits_and_stable() {
    let h = short_hash("abc");
    assert_eq!(h, "ba7816bf8f01cfea");
    assert_eq!(h, short_hash("abc"));
    assert_ne!(h, short_hash("abd"));
}

#[test]
fn families_are_spelled_as_nft_does() {
    use weft_model::IpFamily;
    let v4 = IpFamily::V4;
    let v6 = IpFamily::V6;
    assert_eq!(
        [v4.suffix(), v4.keyword(), v4.addr_type(), v4.nfproto()],
        ["4", "ip", "ipv4_addr", "ipv4"]
    );
    assert_eq!(
        [v6.suffix(), v6.keyword(), v6.addr_type(), v6.nfproto()],
        ["6", "ip6", "ipv6_addr", "ipv6"]
    );
}

/// `sample()` plus a `typeof` data map that chain `c` looks up.
fn with_data_map() -> Ruleset {
    let mut r = sample();
    r.maps.insert(
        "b".into(),
        MapDef {
            key_type: "typeof numgen random mod 1".into(),
            value_type: "ip daddr . tcp dport".into(),
            elements: [("0".to_owned(), "10.0.0.1 . 80".to_owned())].into(),
        },
    );
    r.chains.insert(
        "c".into(),
        vec!["meta l4proto tcp dnat ip to numgen random mod 1 offset 0 map @b".into()],
    );
    r
}

#[test]
fn data_maps_come_before_the_chains_that_look_them_up() {
    let text = render_full(&with_data_map());
    let map = text.find("\tmap b {").unwrap();
    assert!(text.contains("\tmap b {\n\t\ttypeof numgen random mod 1 : ip daddr . tcp dport\n"));
    assert!(map < text.find("\tchain c {").unwrap(), "{text}");
    // Verdict maps still follow the chains they name.
    assert!(text.find("\tchain c {").unwrap() < text.find("\tmap m {").unwrap());
}

#[test]
fn a_new_typeof_map_is_declared_with_typeof() {
    let delta = render_delta(&sample(), &with_data_map()).unwrap();
    assert!(
        delta.contains("add map inet t b { typeof numgen random mod 1 : ip daddr . tcp dport; }"),
        "{delta}"
    );
}
