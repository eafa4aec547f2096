use statefold::Machine;

#[derive(Machine)]
#[machine(table = "a_table_name_that_goes_on_and_on_far_beyond_what_postgres_allows")]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
