//! The schema each backend renders from a machine's description: the tables,
//! constraints and indexes the store relies on, read as they will be run.

use statefold::{Backend, Machine, MySql, Postgres, Sqlite};
use statefold_tests::machines::{Account, Order, Sample, Ticket};

#[test]
fn sqlite_schema_of_orders() {
    assert_eq!(
        Sqlite::create_tables_sql(Order::DEF),
        [
            "CREATE TABLE IF NOT EXISTS `orders` (
    `id` INTEGER PRIMARY KEY AUTOINCREMENT,
    `status` TEXT NOT NULL,
    `version` INTEGER NOT NULL,
    `created_at` TEXT NOT NULL,
    `updated_at` TEXT NOT NULL,
    `customer` TEXT NOT NULL,
    `amount_cents` INTEGER NOT NULL,
    `payment_ref` TEXT,
    `tracking` TEXT,
    `reason` TEXT,
    CONSTRAINT `orders_status_check` CHECK (`status` IN ('placed', 'paid', 'shipped', 'cancelled', 'delivered'))
) STRICT",
            "CREATE TABLE IF NOT EXISTS `order_events` (
    `id` INTEGER PRIMARY KEY AUTOINCREMENT,
    `record_id` INTEGER NOT NULL,
    `kind` TEXT NOT NULL,
    `from_status` TEXT,
    `to_status` TEXT NOT NULL,
    `version` INTEGER NOT NULL,
    `payload` TEXT NOT NULL,
    `metadata` TEXT NOT NULL,
    `created_at` TEXT NOT NULL,
    `schema_version` INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT `order_events_record_version_key` UNIQUE (`record_id`, `version`)
) STRICT",
            "CREATE INDEX IF NOT EXISTS `orders_status_idx` ON `orders` (`status`, `id`)",
            "CREATE INDEX IF NOT EXISTS `orders_customer_idx` ON `orders` (`customer`)",
        ]
    );
}

#[test]
fn postgres_schema_of_orders() {
    assert_eq!(
        Postgres::create_tables_sql(Order::DEF),
        [
            r#"CREATE TABLE IF NOT EXISTS "orders" (
    "id" BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "status" TEXT NOT NULL,
    "version" BIGINT NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "updated_at" TIMESTAMPTZ NOT NULL,
    "customer" TEXT NOT NULL,
    "amount_cents" BIGINT NOT NULL,
    "payment_ref" TEXT,
    "tracking" TEXT,
    "reason" TEXT,
    CONSTRAINT "orders_status_check" CHECK ("status" IN ('placed', 'paid', 'shipped', 'cancelled', 'delivered'))
)"#,
            r#"CREATE TABLE IF NOT EXISTS "order_events" (
    "id" BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "record_id" BIGINT NOT NULL,
    "kind" TEXT NOT NULL,
    "from_status" TEXT,
    "to_status" TEXT NOT NULL,
    "version" BIGINT NOT NULL,
    "payload" JSONB NOT NULL,
    "metadata" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "schema_version" BIGINT NOT NULL DEFAULT 1,
    "tx" xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT "order_events_record_version_key" UNIQUE ("record_id", "version")
)"#,
            r#"CREATE INDEX IF NOT EXISTS "orders_status_idx" ON "orders" ("status", "id")"#,
            r#"CREATE INDEX IF NOT EXISTS "orders_customer_idx" ON "orders" ("customer")"#,
            r#"CREATE INDEX IF NOT EXISTS "order_events_tx_idx" ON "order_events" ("tx", "id")"#,
        ]
    );
}

#[test]
fn mysql_schema_of_orders() {
    assert_eq!(
        MySql::create_tables_sql(Order::DEF),
        [
            r"CREATE TABLE IF NOT EXISTS `orders` (
    `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    `status` VARCHAR(255) NOT NULL,
    `version` BIGINT NOT NULL,
    `created_at` DATETIME(6) NOT NULL,
    `updated_at` DATETIME(6) NOT NULL,
    `customer` LONGTEXT NOT NULL,
    `amount_cents` BIGINT NOT NULL,
    `payment_ref` LONGTEXT,
    `tracking` LONGTEXT,
    `reason` LONGTEXT,
    CONSTRAINT `orders_status_check` CHECK (`status` IN ('placed', 'paid', 'shipped', 'cancelled', 'delivered')),
    KEY `orders_status_idx` (`status`, `id`),
    KEY `orders_customer_idx` (`customer`(255))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
            r"CREATE TABLE IF NOT EXISTS `order_events` (
    `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    `record_id` BIGINT NOT NULL,
    `kind` VARCHAR(255) NOT NULL,
    `from_status` VARCHAR(255),
    `to_status` VARCHAR(255) NOT NULL,
    `version` BIGINT NOT NULL,
    `payload` JSON NOT NULL,
    `metadata` JSON NOT NULL,
    `created_at` DATETIME(6) NOT NULL,
    `schema_version` BIGINT NOT NULL DEFAULT 1,
    CONSTRAINT `order_events_record_version_key` UNIQUE (`record_id`, `version`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
        ]
    );
}

#[test]
fn caller_keys_take_the_key_type() {
    let first_lines = |sql: String| sql.lines().take(2).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(first_lines(Sqlite::records_table_sql(Ticket::DEF))[1], "    `id` TEXT PRIMARY KEY NOT NULL,");
    assert_eq!(first_lines(Postgres::records_table_sql(Ticket::DEF))[1], r#"    "id" UUID PRIMARY KEY,"#);
    assert_eq!(first_lines(MySql::records_table_sql(Ticket::DEF))[1], "    `id` CHAR(36) NOT NULL PRIMARY KEY,");
    assert_eq!(first_lines(Postgres::records_table_sql(Account::DEF))[1], r#"    "id" TEXT PRIMARY KEY,"#);
    assert_eq!(
        first_lines(MySql::records_table_sql(Account::DEF))[1],
        "    `id` VARBINARY(1020) NOT NULL PRIMARY KEY,"
    );
    assert!(MySql::events_table_sql(Account::DEF).contains("`record_id` VARBINARY(1020) NOT NULL"));
    assert!(Postgres::events_table_sql(Ticket::DEF).contains(r#""record_id" UUID NOT NULL"#));
}

#[test]
fn every_logical_type_has_a_column_type() {
    let columns: Vec<String> = Sample::DEF.columns.iter().map(Postgres::column_sql).collect();
    assert!(columns.contains(&r#""tiny" INTEGER NOT NULL"#.to_owned()));
    assert!(columns.contains(&r#""uint" BIGINT NOT NULL"#.to_owned()));
    assert!(columns.contains(&r#""single" DOUBLE PRECISION NOT NULL"#.to_owned()));
    assert!(columns.contains(&r#""flag" BOOLEAN NOT NULL"#.to_owned()));
    assert!(columns.contains(&r#""bytes" BYTEA NOT NULL"#.to_owned()));
    assert!(columns.contains(&r#""at" TIMESTAMPTZ NOT NULL"#.to_owned()));
    assert!(columns.contains(&r#""uuid" UUID NOT NULL"#.to_owned()));
    assert!(columns.contains(&r#""detail" JSONB NOT NULL"#.to_owned()));
    assert!(columns.contains(&r#""maybe_detail" JSONB"#.to_owned()));
    assert!(columns.contains(&r#""note" TEXT"#.to_owned()));
    let mysql: Vec<String> = Sample::DEF.columns.iter().map(MySql::column_sql).collect();
    assert!(mysql.contains(&"`flag` TINYINT(1) NOT NULL".to_owned()));
    assert!(mysql.contains(&"`at` DATETIME(6) NOT NULL".to_owned()));
    assert!(mysql.contains(&"`bytes` LONGBLOB NOT NULL".to_owned()));
}

#[test]
fn identifiers_and_literals_are_quoted() {
    assert_eq!(Postgres::quote_ident(r#"we"ird"#), r#""we""ird""#);
    assert_eq!(MySql::quote_ident("we`ird"), "`we``ird`");
    assert_eq!(Sqlite::quote_ident("order"), "`order`");
}
