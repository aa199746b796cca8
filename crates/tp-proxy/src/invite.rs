//! The invite and password-reset pages: `tpctl users add` prints
//! `https://<proxy>/web/invite/<token>`; the page asks for a password twice and the
//! proxy completes the token through the Auth server (`ChangeUserAuthentication`).
//! Plain HTML with inline styles: no scripts, no external assets.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use tp_client::ErrorKind;
use tp_proto::proto::ChangeUserAuthenticationRequest;

use crate::web::WebState;

/// The shortest password the page accepts (the Auth server enforces it too).
pub const MIN_PASSWORD: usize = 6;

/// What the form posts.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    password: String,
    confirm: String,
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '&' => "&amp;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;color:#1b1b1f}}\
label{{display:block;margin:1rem 0 .25rem}}input{{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}}\
button{{margin-top:1.5rem;padding:.6rem 1.2rem;font-size:1rem}}.error{{color:#b00020}}.ok{{color:#0a6b2d}}</style>\
</head><body><h1>{title}</h1>{body}</body></html>"
    )
}

fn form(user: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| {
            format!(
                "<p class=\"error\" id=\"error\" role=\"alert\">{}</p>",
                escape(e)
            )
        })
        .unwrap_or_default();
    page(
        "Set your password",
        &format!(
            "<p>Choose a password for <strong id=\"user\">{}</strong>.</p>{error}\
<form method=\"post\"><label for=\"password\">Password (at least {MIN_PASSWORD} characters)</label>\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" required minlength=\"{MIN_PASSWORD}\">\
<label for=\"confirm\">Confirm password</label>\
<input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" required>\
<button id=\"submit\" type=\"submit\">Set password</button></form>",
            escape(user)
        ),
    )
}

fn invalid() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(page(
            "Link expired",
            "<p class=\"error\" id=\"error\">This invite or reset link is invalid, has already been used, or has expired. \
Ask your administrator for a new one (<code>tpctl users reset</code>).</p>",
        )),
    )
        .into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(page(
            "Try again later",
            "<p class=\"error\" id=\"error\">The cluster's Auth server cannot be reached.</p>",
        )),
    )
        .into_response()
}

/// `GET /web/invite/{token}` and `/web/reset/{token}`.
pub async fn show(State(state): State<WebState>, Path(token): Path<String>) -> Response {
    let Some(auth) = state.auth.as_ref() else {
        return unavailable();
    };
    match auth.get_reset_password_token(&token).await {
        Ok(t) => Html(form(&t.spec.map(|s| s.user).unwrap_or_default(), None)).into_response(),
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::BadParameter => {
            invalid()
        }
        Err(_) => unavailable(),
    }
}

/// `POST /web/invite/{token}` and `/web/reset/{token}`: sets the password.
pub async fn submit(
    State(state): State<WebState>,
    Path(token): Path<String>,
    Form(f): Form<PasswordForm>,
) -> Response {
    let Some(auth) = state.auth.as_ref() else {
        return unavailable();
    };
    let user = match auth.get_reset_password_token(&token).await {
        Ok(t) => t.spec.map(|s| s.user).unwrap_or_default(),
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::BadParameter => {
            return invalid();
        }
        Err(_) => return unavailable(),
    };
    let problem = if f.password != f.confirm {
        Some("The passwords do not match.".to_string())
    } else if f.password.chars().count() < MIN_PASSWORD {
        Some(format!(
            "The password must be at least {MIN_PASSWORD} characters long."
        ))
    } else {
        None
    };
    if let Some(p) = problem {
        return (StatusCode::BAD_REQUEST, Html(form(&user, Some(&p)))).into_response();
    }
    let req = ChangeUserAuthenticationRequest {
        token_id: token,
        new_password: f.password.into_bytes(),
        ..Default::default()
    };
    match auth.change_user_authentication(req).await {
        Ok(_) => Html(page(
            "Password set",
            &format!(
                "<p class=\"ok\" id=\"done\">The password for <strong>{}</strong> is set. You can now log in, for example with \
<code>tpsh login --proxy={} --user={}</code>.</p>",
                escape(&user),
                escape(&state.public_addr()),
                escape(&user)
            ),
        ))
        .into_response(),
        Err(e) if e.kind() == ErrorKind::BadParameter => (StatusCode::BAD_REQUEST, Html(form(&user, Some(&e.to_string())))).into_response(),
        Err(e) if e.kind() == ErrorKind::NotFound => invalid(),
        Err(_) => unavailable(),
    }
}
