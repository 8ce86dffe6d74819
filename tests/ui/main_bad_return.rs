#[shareworker::main]
async fn returns_a_number() -> u32 {
    0
}

struct NotDisplay;

#[shareworker::main]
async fn error_not_display() -> Result<(), NotDisplay> {
    Err(NotDisplay)
}

fn main() {}
