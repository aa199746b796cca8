//! Reading the audit log over gRPC (`tp.audit.v1.AuditService`): who may, what an event
//! carries, and paging.

use tp_client::ErrorKind;
use tp_proto::types::{Metadata, RoleV6};
use tp_tests::cluster::{TestCluster, now};

#[tokio::test(flavor = "multi_thread")]
async fn an_auditor_reads_the_log_page_by_page_and_others_are_denied() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let admin = c.admin().await;
    let auditor = c.client(&c.add_user("audrey", &["auditor"]).await).await;
    let editor = c.client(&c.add_user("eddie", &["editor"]).await).await;

    // Something to audit: a role created, and a create that fails.
    let role = RoleV6 {
        kind: "role".into(),
        version: "v7".into(),
        metadata: Some(Metadata {
            name: "audited".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    admin.create_role(role.clone()).await.unwrap();
    assert_eq!(
        admin.create_role(role).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );

    // The editor role has no rule on `event`: denied, as in Teleport.
    assert_eq!(
        editor.list_audit_events("", 0).await.unwrap_err().kind(),
        ErrorKind::AccessDenied
    );
    assert_eq!(
        auditor.list_audit_events("", -1).await.unwrap_err().kind(),
        ErrorKind::BadParameter
    );

    // The whole log in one page, and the same walked one event at a time.
    let all = auditor.list_audit_events("", 0).await.unwrap();
    assert!(all.next_key.is_empty());
    let mut walked = Vec::new();
    let mut start = String::new();
    loop {
        let page = auditor.list_audit_events(&start, 1).await.unwrap();
        assert!(page.events.len() <= 1);
        walked.extend(page.events);
        if page.next_key.is_empty() {
            break;
        }
        start = page.next_key;
    }
    assert_eq!(walked, all.events);

    let created: Vec<_> = all
        .events
        .iter()
        .filter(|e| e.kind == "role" && e.name == "audited")
        .collect();
    assert_eq!(created.len(), 2, "{:#?}", all.events);
    assert!(created[0].success && created[0].error.is_empty());
    assert!(!created[1].success && created[1].error.contains("already exists"));
    assert!(created.iter().all(|e| e.event == "role.created"));
    assert!(created.iter().all(|e| e.cluster_name == "example.com"));
    // Times are real and in order; ids sort as the events were appended.
    let t0 = created[0].time.unwrap();
    assert!((t0.seconds - now()).abs() < 60, "{t0:?}");
    let t1 = created[1].time.unwrap();
    assert!((t1.seconds, t1.nanos) >= (t0.seconds, t0.nanos));
    assert!(all.events.windows(2).all(|w| w[0].id < w[1].id));
    // The users the admin created are in the log too, by the admin.
    assert!(
        all.events
            .iter()
            .any(|e| e.kind == "user" && e.name == "audrey" && e.success)
    );
}
