use statefold::{Consumer, Envelope, Handler, HandlerError, Machine, Sqlite, Store, Tx};

#[derive(Debug, Clone, Machine)]
#[machine(table = "doors")]
enum Door {
    #[initial]
    Closed,
}

/// A handler with no `reset`: rebuilding it would apply every event twice.
struct Log;

impl Handler<Door, Sqlite> for Log {
    async fn handle(&mut self, _: &mut Tx<'static, Sqlite>, _: &Envelope<Door>) -> Result<(), HandlerError> {
        Ok(())
    }
}

async fn rebuild(store: Store<Door, Sqlite>) {
    let consumer = Consumer::new(&store, "log");
    let _ = consumer.rebuild(&mut Log, std::future::pending()).await;
}

fn main() {}
