//! The PostgreSQL harness itself: a committed row survives a SIGKILL of the
//! server and its restart (crash recovery), and the cluster's password is
//! required.

use callbox_tests::postgres::Postgres;

#[test]
fn committed_row_survives_kill_and_restart_and_password_is_required() {
    let mut pg = Postgres::start();
    assert!(
        pg.url()
            .ends_with(&format!("@127.0.0.1:{}/callbox", pg.port()))
    );
    assert!(pg.url().contains(pg.password()));

    pg.psql("create table calls (id int primary key, caller text not null)");
    pg.psql("insert into calls values (1, '+15550100')");

    pg.kill();
    assert!(!pg.is_running());
    pg.restart();
    assert!(pg.is_running());
    assert_eq!(
        pg.psql("select caller from calls where id = 1").trim(),
        "+15550100"
    );
    assert!(
        pg.log().contains("not properly shut down"),
        "no crash recovery in the log:\n{}",
        pg.log()
    );

    let out = pg
        .psql_command()
        .env("PGPASSWORD", "not-the-password")
        .args(["-c", "select 1"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a wrong password was accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = pg
        .psql_command()
        .env_remove("PGPASSWORD")
        .args(["-w", "-c", "select 1"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "no password was accepted");
}
