//! The side-effect machine on payment cards, after Nubank's talk: pure
//! handlers return effects as data; a runner executes them once per
//! idempotency key in one transaction; an outbox dispatcher delivers the
//! messages and the card network's requests after the commit, retrying.
//!
//! Run it with `cargo run -p cards` (embedded SQLite, nothing to install):
//! it starts a small card network on 127.0.0.1 that fails its first call
//! and drops requests whose `Idempotency-Key` it has seen.

use axum::http::{HeaderMap, StatusCode};
use statefold::effects::{Channel, Dispatcher, Effects, Http, Message, Request, Runner};
use statefold::{Machine, Page, Record, Sqlite, Store};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// A payment card.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(table = "cards")]
enum Card {
    /// Usable.
    #[initial]
    Active {
        /// Whose card it is.
        #[column(index)]
        customer: String,
    },
    /// Blocked at the customer's request, or for fraud.
    #[from(Active)]
    Blocked {
        /// Why.
        reason: String,
    },
}

/// Blocks a card: the transition, a status-changed message, and the card
/// network told. Pure: no database, no network.
fn block(card: Record<Card, CardActive>, network: &str, reason: &str) -> Effects {
    let id = *card.id();
    Effects::new()
        .transition(card.transition(CardBlocked { reason: reason.to_owned() }))
        .message(Message::new(
            "card-status-changed",
            id.to_string(),
            &serde_json::json!({ "card": id, "status": "blocked" }),
        ))
        .request(Request::post(&format!("{network}/cards/{id}/block")).json(&serde_json::json!({ "reason": reason })))
}

/// Blocks every card of a customer and notifies them once: composition.
fn block_all(customer: &str, cards: Vec<Record<Card, CardActive>>, network: &str) -> Effects {
    let blocked: Effects = cards.into_iter().map(|card| block(card, network, "customer request")).sum();
    blocked.message(Message::new(
        "customer-notifications",
        customer,
        &format!("{customer}, all your cards are blocked"),
    ))
}

/// What the card network saw: the idempotency key, the path, and whether it took it.
#[derive(Debug)]
struct Call {
    key: String,
    path: String,
    answer: StatusCode,
}

/// A card network that fails its first call (503) and takes each
/// `Idempotency-Key` once (a repeat gets 200 and changes nothing).
async fn card_network() -> (String, mpsc::UnboundedReceiver<Call>) {
    let (calls, received) = mpsc::unbounded_channel();
    let seen = Arc::new(Mutex::new((0_usize, HashSet::<String>::new())));
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
        let (calls, seen) = (calls.clone(), Arc::clone(&seen));
        async move {
            let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let answer = {
                let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                seen.0 += 1;
                if seen.0 == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else if seen.1.insert(key.clone()) {
                    StatusCode::OK
                } else {
                    StatusCode::ALREADY_REPORTED
                }
            };
            let _ = calls.send(Call { key, path: uri.path().to_owned(), answer });
            if answer == StatusCode::ALREADY_REPORTED {
                StatusCode::OK
            } else {
                answer
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a local port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the card network serves") });
    (format!("http://{address}"), received)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cards = Store::<Card, Sqlite>::connect("sqlite::memory:").await?;
    cards.create_tables().await?;
    cards.create_support_tables().await?;
    let runner = Runner::new(cards.pool().clone()).with_store(&cards);
    let (network, mut calls) = card_network().await;

    let first = cards.insert(CardActive { customer: "ada".into() }).await?;
    for customer in ["ada", "ada", "bob"] {
        cards.insert(CardActive { customer: customer.into() }).await?;
    }

    println!("== block card {}: the handler's effects, as data", first.id());
    let effects = block(first, &network, "lost");
    println!("{effects:#?}");

    let ran = runner.run("block-card-1", &effects).await?;
    println!("\n== run under key \"block-card-1\": replayed = {}", ran.replayed);
    for applied in &ran.outcome.transitions {
        println!("   {applied}");
    }
    let again = runner.run("block-card-1", &effects).await?;
    println!(
        "== the same command again: replayed = {}, same outcome = {}, nothing new written",
        again.replayed,
        again.outcome == ran.outcome
    );

    let mut active = Vec::new();
    for row in cards.list(CardStatus::Active, Page::first(100)).await?.into_iter().filter(|row| row.customer == "ada") {
        if let CardState::Active(card) = cards.load(&row.id).await? {
            active.push(card);
        }
    }
    let all = block_all("ada", active, &network);
    println!(
        "\n== block all of ada's cards: {} transitions, {} messages, {} requests (the merge of one block per card, plus a notification)",
        all.transitions().len(),
        all.messages().count(),
        all.requests().count()
    );
    let ran_all = runner.run("block-all-ada", &all).await?;
    for applied in &ran_all.outcome.transitions {
        println!("   {applied}");
    }

    println!("\n== the outbox dispatcher delivers, after the commits");
    let (channel, mut messages) = Channel::new();
    let dispatcher = Dispatcher::<Sqlite>::new(cards.pool().clone())
        .messages(channel)
        .requests(Http::new().timeout(Duration::from_secs(5)))
        .backoff(statefold::Backoff::new(Duration::from_millis(200), Duration::from_secs(2)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move { dispatcher.run(async { drop(stopped.await) }).await });

    let expected_requests = effects.requests().count() + all.requests().count();
    let expected_messages = effects.messages().count() + all.messages().count();
    let deadline = Duration::from_secs(30);
    let mut taken = HashSet::new();
    while taken.len() < expected_requests {
        let call = tokio::time::timeout(deadline, calls.recv()).await?.ok_or("the card network stopped")?;
        let note = match call.answer {
            StatusCode::OK => {
                taken.insert(call.key.clone());
                "taken"
            }
            StatusCode::ALREADY_REPORTED => "a repeat: dropped",
            _ => "failed: it will be retried",
        };
        println!("   network: {} {} (Idempotency-Key {}): {note}", call.answer.as_u16(), call.path, call.key);
    }
    for _ in 0..expected_messages {
        let delivery = tokio::time::timeout(deadline, messages.recv()).await?.ok_or("the dispatcher stopped")?;
        if let statefold::effects::Outgoing::Message(message) = delivery.outgoing {
            println!("   message {} to {}: {}", delivery.id, message.topic, message.payload);
        }
    }
    drop(stop);
    running.await??;
    println!("\n== the card network took {} requests, each once, though the first was sent twice", taken.len());
    Ok(())
}
