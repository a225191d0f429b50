//! Prints what mode percid runs in: `cargo run --example status`.

fn main() {
    let status = percid::status();
    println!("{status}");
    println!();
    println!(
        "this thread: cpu {:?}, node {:?}, mm_cid {:?}",
        percid::current_cpu(),
        percid::current_node(),
        percid::current_mm_cid()
    );
}
