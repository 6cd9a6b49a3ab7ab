//! The Kubernetes extender's wire format, byte for byte, over real HTTP: every type
//! (ExtenderArgs in both modes, ExtenderFilterResult, HostPriorityList, ExtenderPreemptionArgs in
//! both modes, ExtenderPreemptionResult), keys in any letter case on input, Go's encoding on
//! output.

mod common;

use common::*;

const FILTER_FAILED: &str = r#""FailedNodes":{"busy":"colo: not enough reclaimable CPU for batch work"},"FailedAndUnresolvableNodes":{"ghost":"colo: no report from the node's colo-agent","hot":"colo: online services on the node suffer interference, no batch work for now","stale":"colo: the node's colo-agent report is stale"},"Error":"""#;

fn filter_names_want() -> String {
    format!(r#"{{"Nodes":null,"NodeNames":["idle","mid"],{FILTER_FAILED}}}"#)
}

const PRIORITIZE_WANT: &str = r#"[{"Host":"idle","Score":8},{"Host":"busy","Score":0},{"Host":"hot","Score":0},{"Host":"stale","Score":0},{"Host":"ghost","Score":0},{"Host":"mid","Score":5}]"#;

#[tokio::test]
async fn filter_and_prioritize_with_node_names() {
    let s = start(fleet_config()).await;
    load_fleet(&s);
    let body = format!(r#"{{"Pod":{BATCH_POD},"Nodes":null,"NodeNames":{FLEET}}}"#);
    let r = post(&s, "/colo/filter", &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(text(&r), filter_names_want());
    let r = post(&s, "/colo/prioritize", &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(text(&r), PRIORITIZE_WANT);
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn input_keys_in_any_letter_case() {
    let s = start(fleet_config()).await;
    load_fleet(&s);
    // Every struct key in odd case; resource names (map keys) stay as they are.
    let pod = r#"{"METADATA":{"Name":"job-1","NAMESPACE":"etl","uId":"p-1"},"Spec":{"CONTAINERS":[{"NAME":"main","Resources":{"REQUESTS":{"colo.io/batch-cpu":"1000","colo.io/batch-memory":"2Gi"}}}]}}"#;
    for body in [
        format!(r#"{{"pod":{pod},"nodenames":{FLEET}}}"#),
        format!(r#"{{"POD":{pod},"NODENAMES":{FLEET}}}"#),
        format!(r#"{{"pOd":{pod},"nodeNames":{FLEET},"unknownField":[1,{{"x":null}}]}}"#),
    ] {
        let r = post(&s, "/colo/filter", &body).await;
        assert_eq!(text(&r), filter_names_want(), "for {body}");
        let r = post(&s, "/colo/prioritize", &body).await;
        assert_eq!(text(&r), PRIORITIZE_WANT, "for {body}");
    }
    s.shutdown().await.unwrap();
}

fn node_json(name: &str) -> String {
    format!(
        r#"{{"metadata":{{"name":"{name}","uid":"uid-{name}","labels":{{"zone":"a&b","kubernetes.io/hostname":"{name}"}}}},"spec":{{"podCIDR":"10.0.0.0/24"}},"status":{{"capacity":{{"cpu":"16","memory":"64Gi"}}}}}}"#
    )
}

#[tokio::test]
async fn filter_and_prioritize_with_full_nodes() {
    let s = start(fleet_config()).await;
    load_fleet(&s);
    let names = ["idle", "busy", "hot", "stale", "ghost", "mid"];
    let items: Vec<String> = names.iter().map(|n| node_json(n)).collect();
    let body = format!(
        r#"{{"Pod":{BATCH_POD},"Nodes":{{"kind":"NodeList","apiVersion":"v1","metadata":{{"resourceVersion":"42"}},"items":[{}]}},"NodeNames":null}}"#,
        items.join(",")
    );
    let r = post(&s, "/colo/filter", &body).await;
    assert_eq!(r.status, 200);
    // Nodes come back as Go re-encodes them: compact, with `&` escaped.
    let out = |n: &str| node_json(n).replace('&', "\\u0026");
    let want = format!(
        r#"{{"Nodes":{{"kind":"NodeList","apiVersion":"v1","metadata":{{"resourceVersion":"42"}},"items":[{},{}]}},"NodeNames":null,{FILTER_FAILED}}}"#,
        out("idle"),
        out("mid")
    );
    assert_eq!(text(&r), want);

    // Lower-case keys, no kind or list metadata, pretty-printed by a non-Go client.
    let pretty = format!(
        "{{\n  \"pod\": {BATCH_POD},\n  \"nodes\": {{ \"ITEMS\": [ {} ] }}\n}}",
        items.join(",\n ")
    );
    let r = post(&s, "/colo/filter", &pretty).await;
    let want = format!(
        r#"{{"Nodes":{{"metadata":{{}},"items":[{},{}]}},"NodeNames":null,{FILTER_FAILED}}}"#,
        out("idle"),
        out("mid")
    );
    assert_eq!(text(&r), want);

    let r = post(&s, "/colo/prioritize", &body).await;
    assert_eq!(text(&r), PRIORITIZE_WANT);
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn other_pods_pass_through_with_equal_scores() {
    let s = start(fleet_config()).await;
    load_fleet(&s);
    let body = format!(r#"{{"Pod":{ONLINE_POD},"NodeNames":{FLEET}}}"#);
    let r = post(&s, "/colo/filter", &body).await;
    assert_eq!(
        text(&r),
        r#"{"Nodes":null,"NodeNames":["idle","busy","hot","stale","ghost","mid"],"FailedNodes":{},"FailedAndUnresolvableNodes":{},"Error":""}"#
    );
    let r = post(&s, "/colo/prioritize", &body).await;
    assert_eq!(
        text(&r),
        r#"[{"Host":"idle","Score":0},{"Host":"busy","Score":0},{"Host":"hot","Score":0},{"Host":"stale","Score":0},{"Host":"ghost","Score":0},{"Host":"mid","Score":0}]"#
    );
    let items = format!(r#"[{},{}]"#, node_json("hot"), node_json("ghost"));
    let body = format!(r#"{{"Pod":{ONLINE_POD},"Nodes":{{"items":{items}}}}}"#);
    let r = post(&s, "/colo/filter", &body).await;
    assert_eq!(
        text(&r),
        format!(
            r#"{{"Nodes":{{"metadata":{{}},"items":{}}},"NodeNames":null,"FailedNodes":{{}},"FailedAndUnresolvableNodes":{{}},"Error":""}}"#,
            items.replace('&', "\\u0026")
        )
    );
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn preempt_keeps_only_nodes_where_eviction_helps() {
    let s = start(fleet_config()).await;
    load_fleet(&s);
    // nodeCacheCapable: victims by UID.
    let meta = |n: &str, pdb: u32| {
        format!(r#""{n}":{{"Pods":[{{"UID":"v-{n}"}}],"NumPDBViolations":{pdb}}}"#)
    };
    let body = format!(
        r#"{{"Pod":{BATCH_POD},"NodeNameToMetaVictims":{{{},{},{},{},{},{}}}}}"#,
        meta("idle", 0),
        meta("busy", 1),
        meta("hot", 0),
        meta("stale", 0),
        meta("ghost", 0),
        meta("mid", 0)
    );
    let r = post(&s, "/colo/preempt", &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        text(&r),
        format!(
            r#"{{"NodeNameToMetaVictims":{{{},{},{}}}}}"#,
            meta("busy", 1),
            meta("idle", 0),
            meta("mid", 0)
        )
    );

    // Full victims: on `busy` (500m free) evicting a 600m batch pod makes room, 400m does not.
    let victim = |uid: &str, cpu: u32| {
        format!(
            r#"{{"metadata":{{"name":"{uid}","uid":"{uid}"}},"spec":{{"containers":[{{"resources":{{"requests":{{"colo.io/batch-cpu":"{cpu}"}}}}}}]}}}}"#
        )
    };
    for (cpu, busy_kept) in [(600, true), (400, false)] {
        let body = format!(
            r#"{{"pod":{BATCH_POD},"nodeNameToVictims":{{"busy":{{"pods":[{}],"numPDBViolations":0}},"hot":{{"Pods":[{}]}},"mid":{{"Pods":[],"NumPDBViolations":2}}}}}}"#,
            victim(&format!("v-{cpu}"), cpu),
            victim("v-hot", 8000)
        );
        let r = post(&s, "/colo/preempt", &body).await;
        let busy = if busy_kept {
            format!(r#""busy":{{"Pods":[{{"UID":"v-{cpu}"}}],"NumPDBViolations":0}},"#)
        } else {
            String::new()
        };
        assert_eq!(
            text(&r),
            format!(
                r#"{{"NodeNameToMetaVictims":{{{busy}"mid":{{"Pods":[],"NumPDBViolations":2}}}}}}"#
            )
        );
    }

    // Other pods' proposals pass unchanged.
    let body = format!(
        r#"{{"Pod":{ONLINE_POD},"NodeNameToMetaVictims":{{{}}}}}"#,
        meta("hot", 3)
    );
    let r = post(&s, "/colo/preempt", &body).await;
    assert_eq!(
        text(&r),
        format!(r#"{{"NodeNameToMetaVictims":{{{}}}}}"#, meta("hot", 3))
    );
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_it_cannot_serve_get_an_error() {
    let s = start(fleet_config()).await;
    let err_prefix = r#"{"Nodes":null,"NodeNames":null,"FailedNodes":null,"FailedAndUnresolvableNodes":null,"Error":""#;
    let r = post(&s, "/colo/filter", "{").await;
    assert_eq!(
        r.status, 200,
        "kube-scheduler reads Error from a 200 answer"
    );
    assert!(
        text(&r).starts_with(&format!("{err_prefix}cannot decode ExtenderArgs: ")),
        "{}",
        text(&r)
    );

    let r = post(&s, "/colo/filter", r#"{"NodeNames":["a"]}"#).await;
    assert_eq!(
        text(&r),
        format!(
            r#"{err_prefix}the request has no Pod: kube-scheduler always sends the pod being scheduled"}}"#
        )
    );
    let r = post(&s, "/colo/filter", r#"{"Pod":{}}"#).await;
    assert_eq!(
        text(&r),
        format!(
            r#"{err_prefix}the request has neither NodeNames nor Nodes: send NodeNames when the extender is nodeCacheCapable, else Nodes"}}"#
        )
    );
    let r = post(
        &s,
        "/colo/filter",
        r#"{"Pod":{},"Nodes":{"items":[{"metadata":{}}]}}"#,
    )
    .await;
    assert_eq!(
        text(&r),
        format!(r#"{err_prefix}a node in Nodes.items has no metadata.name"}}"#)
    );
    let bad_quantity = r#"{"Pod":{"spec":{"containers":[{"resources":{"requests":{"cpu":"lots"}}}]}},"NodeNames":[]}"#;
    let r = post(&s, "/colo/filter", bad_quantity).await;
    assert!(
        text(&r).contains(r#"invalid resource quantity \"lots\""#),
        "{}",
        text(&r)
    );

    for path in ["/colo/prioritize", "/colo/preempt"] {
        let r = post(&s, path, "[").await;
        assert_eq!(r.status, 400, "{path}");
        assert!(
            text(&r).starts_with("cannot decode Extender"),
            "{}",
            text(&r)
        );
    }
    let r = post(&s, "/colo/prioritize", r#"{"Pod":{}}"#).await;
    assert_eq!(r.status, 400);
    s.shutdown().await.unwrap();
}
