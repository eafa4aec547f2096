use statefold::{LogicalType, Machine};

/// Keyed by a caller-supplied UUID.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(id = uuid::Uuid)]
enum Upload {
    #[initial]
    Started { name: String },
    #[from(Started)]
    Finished,
}

/// Keyed by a caller-supplied string.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(id = String)]
enum Account {
    #[initial]
    Opened,
}

fn main() {
    assert_eq!(Upload::DEF.id.ty, LogicalType::Uuid);
    assert!(!Upload::DEF.id.generated);
    assert_eq!(Account::DEF.id.ty, LogicalType::Text);
    assert_eq!(<Upload as Machine>::DEF.table, "upload");
    let _: fn(&UploadRow) -> uuid::Uuid = |row| row.id;
}
