//! What leaves the service: messages (a topic, a key, a JSON payload,
//! headers) and HTTP requests (a method, a URL, headers, a JSON body).
//!
//! Both are built without failing, so that a handler stays a plain
//! function; a problem (a payload that does not serialise, a URL that does
//! not parse) is kept in the value, shows in its `Debug`, is reported by
//! `check`, and makes running the effects fail before anything is written.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// An outgoing message: delivered at least once, in order per key, with a
/// stable message id, after the transaction that wrote it commits.
///
/// ```
/// use statefold::effects::Message;
/// let message = Message::new("card-status-changed", "card-7", &serde_json::json!({ "status": "blocked" }))
///     .header("schema", "v1");
/// assert!(message.check().is_ok());
/// assert_eq!(message.topic, "card-status-changed");
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Where it goes: a topic, or a subject.
    pub topic: String,
    /// Messages of one key are delivered in the order they were committed.
    pub key: String,
    /// The payload, as JSON.
    pub payload: serde_json::Value,
    /// Headers, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Why the message cannot be sent, when built from bad input.
    #[serde(skip)]
    problem: Option<String>,
}

impl Message {
    /// A message to `topic`, ordered by `key`, carrying `payload` as JSON.
    /// A payload that does not serialise is kept as a problem: see [`check`](Self::check).
    pub fn new(topic: impl Into<String>, key: impl Into<String>, payload: &impl Serialize) -> Self {
        let topic = topic.into();
        let (payload, mut problem) = match serde_json::to_value(payload) {
            Ok(payload) => (payload, None),
            Err(error) => (serde_json::Value::Null, Some(format!("the payload does not serialise to JSON: {error}"))),
        };
        if topic.is_empty() {
            problem.get_or_insert_with(|| "the topic is empty".to_owned());
        }
        Self { topic, key: key.into(), payload, headers: BTreeMap::new(), problem }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Whether the message can be sent.
    ///
    /// # Errors
    /// [`Error::InvalidEffect`] naming the message and the problem.
    ///
    /// ```
    /// use statefold::effects::Message;
    /// use std::collections::HashMap;
    /// // JSON object keys must be strings.
    /// let payload: HashMap<(i32, i32), i32> = HashMap::from([((1, 2), 3)]);
    /// let error = Message::new("t", "k", &payload).check().unwrap_err();
    /// assert!(matches!(error, statefold::Error::InvalidEffect { .. }));
    /// ```
    pub fn check(&self) -> Result<(), Error> {
        match &self.problem {
            Some(reason) => {
                Err(Error::InvalidEffect { what: format!("message to {:?}", self.topic), reason: reason.clone() })
            }
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Message");
        s.field("topic", &self.topic).field("key", &self.key).field("payload", &self.payload);
        if !self.headers.is_empty() {
            s.field("headers", &self.headers);
        }
        if let Some(problem) = &self.problem {
            s.field("problem", problem);
        }
        s.finish()
    }
}

/// An HTTP method of an outgoing [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        })
    }
}

/// An outgoing HTTP request: sent at least once after the transaction that
/// wrote it commits, with its message id as the `Idempotency-Key` header,
/// in order per key (by default its URL).
///
/// ```
/// use statefold::effects::{Method, Request};
/// let request = Request::new(Method::Post, "https://network.example/cards/7/block")
///     .json(&serde_json::json!({ "reason": "lost" }))
///     .header("authorization", "Bearer t0k3n");
/// assert!(request.check().is_ok());
///
/// let bad = Request::new(Method::Post, "not a url");
/// assert!(matches!(bad.check(), Err(statefold::Error::InvalidEffect { .. })));
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The URL, normalised (`http` or `https`).
    pub url: String,
    /// Requests of one key are sent in the order they were committed.
    pub key: String,
    /// Headers, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The JSON body, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// Why the request cannot be sent, when built from bad input.
    #[serde(skip)]
    problem: Option<String>,
}

impl Request {
    /// A request with `method` to `url`, keyed by its URL. A URL that does
    /// not parse, or is not `http` or `https`, is kept as a problem: see
    /// [`check`](Self::check).
    pub fn new(method: Method, url: &str) -> Self {
        let (url, problem) = match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => (parsed.to_string(), None),
            Ok(parsed) => {
                (url.to_owned(), Some(format!("the URL's scheme is `{}`; use http or https", parsed.scheme())))
            }
            Err(error) => (url.to_owned(), Some(format!("the URL {url:?} does not parse: {error}"))),
        };
        Self { method, key: url.clone(), url, headers: BTreeMap::new(), body: None, problem }
    }

    /// A `POST` to `url`.
    pub fn post(url: &str) -> Self {
        Self::new(Method::Post, url)
    }

    /// Orders the request with the others of `key` rather than of its URL.
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Sets the body to `body` as JSON. A body that does not serialise is
    /// kept as a problem.
    #[must_use]
    pub fn json(mut self, body: &impl Serialize) -> Self {
        match serde_json::to_value(body) {
            Ok(body) => self.body = Some(body),
            Err(error) => {
                self.problem.get_or_insert_with(|| format!("the body does not serialise to JSON: {error}"));
            }
        }
        self
    }

    /// Whether the request can be sent.
    ///
    /// # Errors
    /// [`Error::InvalidEffect`] naming the request and the problem.
    pub fn check(&self) -> Result<(), Error> {
        match &self.problem {
            Some(reason) => Err(Error::InvalidEffect {
                what: format!("{} request to {:?}", self.method, self.url),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Request");
        s.field("method", &self.method).field("url", &self.url);
        if self.key != self.url {
            s.field("key", &self.key);
        }
        if !self.headers.is_empty() {
            s.field("headers", &self.headers);
        }
        if let Some(body) = &self.body {
            s.field("body", body);
        }
        if let Some(problem) = &self.problem {
            s.field("problem", problem);
        }
        s.finish()
    }
}

/// A message or a request, as the outbox stores it and a destination gets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outgoing {
    /// A message to a topic.
    Message(Message),
    /// An HTTP request.
    Request(Request),
}

impl Outgoing {
    /// The key it is ordered by.
    pub fn key(&self) -> &str {
        match self {
            Self::Message(m) => &m.key,
            Self::Request(r) => &r.key,
        }
    }

    /// `message` or `request`, as stored in the outbox's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Message(_) => "message",
            Self::Request(_) => "request",
        }
    }

    /// Whether it can be sent.
    ///
    /// # Errors
    /// [`Error::InvalidEffect`].
    pub fn check(&self) -> Result<(), Error> {
        match self {
            Self::Message(m) => m.check(),
            Self::Request(r) => r.check(),
        }
    }
}

impl From<Message> for Outgoing {
    fn from(message: Message) -> Self {
        Self::Message(message)
    }
}

impl From<Request> for Outgoing {
    fn from(request: Request) -> Self {
        Self::Request(request)
    }
}
