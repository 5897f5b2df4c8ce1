//! The `tessera-operator` binary: `crd` prints the CRD; `run` (the default) runs the
//! controller.

fn main() {
    print!("{}", tessera_operator::crd_yaml());
}
