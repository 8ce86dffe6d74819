#[shareworker::main(flavor = "current_thread")]
async fn worker(_args: Vec<String>) {}

#[shareworker::main]
async fn by_value(_app: shareworker::App) {}

#[shareworker::main]
async fn two(_app: &mut shareworker::App, _more: u8) {}

fn main() {}
