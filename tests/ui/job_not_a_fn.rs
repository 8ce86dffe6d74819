#[shareworker::job(topic = "emails")]
struct SendEmail;

fn main() {}
