//! A mocked Kubernetes API server (`tower_test::mock::pair`, as kube-rs/controller-rs
//! does): an in-memory object store answering get, list, create, server-side apply,
//! status apply and delete, and recording every call so tests can assert sequences.
//! A real API server cannot run here; the real-control-plane tests are issue #8's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One recorded call.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: Method,
    /// Resource plural, e.g. `secrets`.
    pub(crate) plural: String,
    /// Object name; `None` for collection calls.
    pub(crate) name: Option<String>,
    /// `status` for the status subresource.
    pub(crate) subresource: Option<String>,
    pub(crate) query: String,
    pub(crate) body: Value,
}

impl Call {
    /// Whether the call changes something.
    pub(crate) fn is_write(&self) -> bool {
        self.method != Method::GET
    }

    /// `VERB plural/name[/sub]`, for readable assertions.
    pub(crate) fn describe(&self) -> String {
        let mut out = format!("{} {}", self.method, self.plural);
        if let Some(name) = &self.name {
            out.push('/');
            out.push_str(name);
        }
        if let Some(sub) = &self.subresource {
            out.push('/');
            out.push_str(sub);
        }
        out
    }
}

/// The store and the call log, shared with the test.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiServer {
    objects: Arc<Mutex<BTreeMap<(String, String), Value>>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| decode(v))
}

fn matches_selector(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => object["metadata"]["labels"][k].as_str() == Some(v),
            None => true,
        })
}

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "not found", "reason": "NotFound", "code": 404}),
    )
}

impl ApiServer {
    /// A client talking to a new mocked server.
    pub(crate) fn start() -> (Self, Client) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = Self::default();
        let serving = server.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (status, body) = serving.answer(request).await;
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
        });
        (server, Client::new(service, "default"))
    }

    /// Stores an object as if it existed in the cluster.
    pub(crate) fn put(&self, plural: &str, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        self.objects
            .lock()
            .unwrap()
            .insert((plural.to_owned(), name), object);
    }

    /// The stored object, if any.
    pub(crate) fn get(&self, plural: &str, name: &str) -> Option<Value> {
        self.objects
            .lock()
            .unwrap()
            .get(&(plural.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Deletes an object behind the operator's back.
    pub(crate) fn remove(&self, plural: &str, name: &str) {
        self.objects
            .lock()
            .unwrap()
            .remove(&(plural.to_owned(), name.to_owned()));
    }

    /// Every stored object of a kind.
    pub(crate) fn all(&self, plural: &str) -> Vec<Value> {
        self.objects
            .lock()
            .unwrap()
            .iter()
            .filter(|((p, _), _)| p == plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The calls so far, and forgets them.
    pub(crate) fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    async fn answer(&self, request: Request<Body>) -> (StatusCode, Value) {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let Some(at) = segments.iter().position(|s| *s == "namespaces") else {
            return not_found();
        };
        let plural = segments.get(at + 2).copied().unwrap_or_default().to_owned();
        let name = segments.get(at + 3).map(|s| (*s).to_owned());
        let subresource = segments.get(at + 4).map(|s| (*s).to_owned());
        self.calls.lock().unwrap().push(Call {
            method: method.clone(),
            plural: plural.clone(),
            name: name.clone(),
            subresource: subresource.clone(),
            query: query.clone(),
            body: body.clone(),
        });
        let mut objects = self.objects.lock().unwrap();
        match (method, name) {
            (Method::GET, None) => {
                let selector = query_param(&query, "labelSelector");
                let items: Vec<Value> = objects
                    .iter()
                    .filter(|((p, _), o)| *p == plural && matches_selector(o, selector.as_deref()))
                    .map(|(_, o)| o.clone())
                    .collect();
                (
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            (Method::GET, Some(name)) => match objects.get(&(plural, name)) {
                Some(object) => (StatusCode::OK, object.clone()),
                None => not_found(),
            },
            (Method::POST, _) => {
                let mut object = body;
                if object["metadata"]["name"].is_null() {
                    object["metadata"]["name"] = json!(format!("event-{}", objects.len()));
                }
                let name = object["metadata"]["name"].as_str().unwrap().to_owned();
                if objects.contains_key(&(plural.clone(), name.clone())) {
                    return (
                        StatusCode::CONFLICT,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409, "message": "exists"}),
                    );
                }
                object["metadata"]["uid"] = json!(format!("uid-{name}"));
                objects.insert((plural, name), object.clone());
                (StatusCode::CREATED, object)
            }
            (Method::PATCH, Some(name)) => {
                let key = (plural, name);
                let mut object = objects.get(&key).cloned().unwrap_or(Value::Null);
                if subresource.as_deref() == Some("status") {
                    if object.is_null() {
                        return not_found();
                    }
                    object["status"] = body["status"].clone();
                } else {
                    // Apply: the body is the whole desired object; the status stays.
                    let status = object["status"].clone();
                    object = body;
                    if !status.is_null() {
                        object["status"] = status;
                    }
                }
                objects.insert(key, object.clone());
                (StatusCode::OK, object)
            }
            (Method::DELETE, Some(name)) => match objects.remove(&(plural, name)) {
                Some(object) => (StatusCode::OK, object),
                None => not_found(),
            },
            _ => not_found(),
        }
    }
}
