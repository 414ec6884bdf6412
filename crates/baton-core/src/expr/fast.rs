//! A quicker way through the common conditions: a checked expression made only of literals,
//! context fields, `!`, `&&`, `||`, `?:`, comparisons, `in`, `size`, `contains`,
//! `startsWith`, `endsWith` and `hours.open` is also compiled here, to a tree that reads the
//! fields from [`Facts::plain`] without building CEL values. The cel crate's interpreter
//! resolves every name through strings joined anew, boxes every value and builds an error
//! context for every comparison: about half a microsecond a condition, some 25 conditions a
//! decision (the decide issue's profile).
//!
//! CEL stays the reference. Anything else (comprehensions, maps, arithmetic, conversions,
//! mixed int and double operands, a field that is an object) is not compiled here, and an
//! evaluation that meets what it cannot answer (a field the facts do not have, a value of an
//! unexpected type, a NaN) gives up, and the caller runs CEL for that expression, so that
//! every error is CEL's own, with its message. A property test compares the two on generated
//! expressions and facts.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

use cel::IdedExpr;
use cel::common::ast::{Expr as Node, LiteralValue};

use super::{Facts, Object, Schema, Type};

/// A value of the context as [`Facts::plain`] answers it: scalars and lists of strings,
/// borrowed where the facts keep them.
#[derive(Debug, Clone)]
pub enum Plain<'a> {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Cow<'a, str>),
    Strs(Strs<'a>),
}

impl Plain<'_> {
    /// The same value built for CEL.
    pub fn to_val(&self) -> super::Val {
        match self {
            Plain::Bool(b) => super::val::bool(*b),
            Plain::Int(i) => super::val::int(*i),
            Plain::Double(d) => super::val::double(*d),
            Plain::Str(s) => super::val::string(s),
            Plain::Strs(Strs::Static(l)) => super::val::strings(l),
            Plain::Strs(Strs::Owned(l)) => super::val::strings(l),
        }
    }
}

/// A list of strings, as the facts keep it.
#[derive(Debug, Clone, Copy)]
pub enum Strs<'a> {
    Static(&'a [&'static str]),
    Owned(&'a [String]),
}

impl<'a> Strs<'a> {
    fn len(self) -> usize {
        match self {
            Strs::Static(s) => s.len(),
            Strs::Owned(s) => s.len(),
        }
    }

    fn contains(self, x: &str) -> bool {
        match self {
            Strs::Static(s) => s.contains(&x),
            Strs::Owned(s) => s.iter().any(|v| v == x),
        }
    }
}

/// Static types of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bool,
    Int,
    Double,
    Str,
    Strs,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// A compiled expression of the subset.
#[derive(Debug)]
pub(super) enum Fast {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Box<str>),
    /// A literal list of strings.
    List(Box<[String]>),
    /// A field of the context, by its dotted path.
    Field(Box<str>),
    Not(Box<Fast>),
    And(Box<(Fast, Fast)>),
    Or(Box<(Fast, Fast)>),
    If(Box<(Fast, Fast, Fast)>),
    Cmp(Cmp, Box<(Fast, Fast)>),
    In(Box<(Fast, Fast)>),
    Size(Box<Fast>),
    Str2(StrOp, Box<(Fast, Fast)>),
    HoursOpen(Box<str>),
}

/// What an evaluation reads besides the expression.
pub(super) struct Env<'v> {
    pub facts: &'v dyn Facts,
    pub calendars: std::sync::Arc<BTreeMap<String, crate::hours::Calendar>>,
    pub now: jiff::Timestamp,
}

/// A value met while evaluating.
enum V<'a> {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Cow<'a, str>),
    Strs(Strs<'a>),
    List(&'a [String]),
}

/// The evaluation cannot answer: CEL must.
struct GiveUp;

impl Fast {
    /// Compiles `node` (already checked) if it lies within the subset.
    pub(super) fn compile(schema: &Schema, node: &IdedExpr) -> Option<Fast> {
        let (fast, _) = compile(schema, node)?;
        Some(fast)
    }

    /// The expression's boolean value, or `None` when CEL must answer.
    pub(super) fn eval_bool(&self, env: &Env<'_>) -> Option<bool> {
        match self.eval(env) {
            Ok(V::Bool(b)) => Some(b),
            _ => None,
        }
    }

    fn eval<'a>(&'a self, env: &Env<'a>) -> Result<V<'a>, GiveUp> {
        Ok(match self {
            Fast::Bool(b) => V::Bool(*b),
            Fast::Int(i) => V::Int(*i),
            Fast::Double(d) => V::Double(*d),
            Fast::Str(s) => V::Str(Cow::Borrowed(s)),
            Fast::List(l) => V::List(l),
            Fast::Field(path) => match env.facts.plain(path).ok_or(GiveUp)? {
                Plain::Bool(b) => V::Bool(b),
                Plain::Int(i) => V::Int(i),
                Plain::Double(d) => V::Double(d),
                Plain::Str(s) => V::Str(s),
                Plain::Strs(l) => V::Strs(l),
            },
            Fast::Not(a) => V::Bool(!truth(a.eval(env))?),
            Fast::And(ab) => V::Bool(connective(ab, env, false)?),
            Fast::Or(ab) => V::Bool(connective(ab, env, true)?),
            Fast::If(c) => {
                if truth(c.0.eval(env))? {
                    c.1.eval(env)?
                } else {
                    c.2.eval(env)?
                }
            }
            Fast::Cmp(op, ab) => {
                let ord = match (ab.0.eval(env)?, ab.1.eval(env)?) {
                    (V::Int(a), V::Int(b)) => a.cmp(&b),
                    (V::Double(a), V::Double(b)) => a.partial_cmp(&b).ok_or(GiveUp)?,
                    (V::Str(a), V::Str(b)) => a.as_ref().cmp(b.as_ref()),
                    (V::Bool(a), V::Bool(b)) if matches!(op, Cmp::Eq | Cmp::Ne) => a.cmp(&b),
                    _ => return Err(GiveUp),
                };
                V::Bool(match op {
                    Cmp::Eq => ord == Ordering::Equal,
                    Cmp::Ne => ord != Ordering::Equal,
                    Cmp::Lt => ord == Ordering::Less,
                    Cmp::Le => ord != Ordering::Greater,
                    Cmp::Gt => ord == Ordering::Greater,
                    Cmp::Ge => ord != Ordering::Less,
                })
            }
            Fast::In(ab) => {
                let V::Str(x) = ab.0.eval(env)? else {
                    return Err(GiveUp);
                };
                V::Bool(match ab.1.eval(env)? {
                    V::Strs(l) => l.contains(&x),
                    V::List(l) => l.iter().any(|v| *v == *x),
                    _ => return Err(GiveUp),
                })
            }
            Fast::Size(a) => V::Int(match a.eval(env)? {
                V::Str(s) => s.chars().count() as i64,
                V::Strs(l) => l.len() as i64,
                V::List(l) => l.len() as i64,
                _ => return Err(GiveUp),
            }),
            Fast::Str2(op, ab) => {
                let (V::Str(a), V::Str(b)) = (ab.0.eval(env)?, ab.1.eval(env)?) else {
                    return Err(GiveUp);
                };
                V::Bool(match op {
                    StrOp::Contains => a.contains(b.as_ref()),
                    StrOp::StartsWith => a.starts_with(b.as_ref()),
                    StrOp::EndsWith => a.ends_with(b.as_ref()),
                })
            }
            Fast::HoursOpen(name) => V::Bool(
                env.calendars
                    .get(name.as_ref())
                    .is_some_and(|c| c.is_open(env.now)),
            ),
        })
    }
}

/// `&&` (`decisive` false) or `||` (`decisive` true). CEL's logic is commutative over
/// errors: `false && error` and `error && false` are both false, as `true || error` and
/// `error || true` are true.
fn connective<'a>(ab: &'a (Fast, Fast), env: &Env<'a>, decisive: bool) -> Result<bool, GiveUp> {
    let left = truth(ab.0.eval(env));
    if matches!(left, Ok(b) if b == decisive) {
        return Ok(decisive);
    }
    match (left, truth(ab.1.eval(env))) {
        (_, Ok(b)) if b == decisive => Ok(decisive),
        (Ok(_), Ok(_)) => Ok(!decisive),
        _ => Err(GiveUp),
    }
}

fn truth(v: Result<V<'_>, GiveUp>) -> Result<bool, GiveUp> {
    match v? {
        V::Bool(b) => Ok(b),
        _ => Err(GiveUp),
    }
}

fn pair(schema: &Schema, a: &IdedExpr, b: &IdedExpr) -> Option<((Fast, Ty), (Fast, Ty))> {
    Some((compile(schema, a)?, compile(schema, b)?))
}

fn compile(schema: &Schema, node: &IdedExpr) -> Option<(Fast, Ty)> {
    match &node.expr {
        Node::Literal(LiteralValue::Boolean(b)) => Some((Fast::Bool(*b.inner()), Ty::Bool)),
        Node::Literal(LiteralValue::Int(i)) => Some((Fast::Int(*i.inner()), Ty::Int)),
        Node::Literal(LiteralValue::Double(d)) => Some((Fast::Double(*d.inner()), Ty::Double)),
        Node::Literal(LiteralValue::String(s)) => {
            let s: &str = s.as_ref();
            Some((Fast::Str(s.into()), Ty::Str))
        }
        Node::List(list) => {
            let items = list
                .elements
                .iter()
                .map(|e| match &e.expr {
                    Node::Literal(LiteralValue::String(s)) => {
                        let s: &str = s.as_ref();
                        Some(s.to_string())
                    }
                    _ => None,
                })
                .collect::<Option<Vec<String>>>()?;
            Some((Fast::List(items.into()), Ty::Strs))
        }
        Node::Select(sel) if !sel.test => {
            let path = path(node)?;
            let ty = match field_type(&schema.root, &path)? {
                Type::Bool => Ty::Bool,
                Type::Int => Ty::Int,
                Type::Double => Ty::Double,
                Type::String => Ty::Str,
                Type::List(t) if **t == Type::String => Ty::Strs,
                _ => return None,
            };
            Some((Fast::Field(path.into()), ty))
        }
        Node::Call(call) => {
            let f = call.func_name.as_str();
            let target = call.target.as_deref();
            match (f, target, call.args.as_slice()) {
                ("open", Some(t), [arg]) if matches!(&t.expr, Node::Ident(n) if n == "hours") => {
                    match &arg.expr {
                        Node::Literal(LiteralValue::String(name)) => {
                            let name: &str = name.as_ref();
                            Some((Fast::HoursOpen(name.into()), Ty::Bool))
                        }
                        _ => None,
                    }
                }
                ("!_", None, [a]) => {
                    let (a, ta) = compile(schema, a)?;
                    (ta == Ty::Bool).then(|| (Fast::Not(Box::new(a)), Ty::Bool))
                }
                ("_&&_" | "_||_", None, [a, b]) => {
                    let ((a, ta), (b, tb)) = pair(schema, a, b)?;
                    if ta != Ty::Bool || tb != Ty::Bool {
                        return None;
                    }
                    let ab = Box::new((a, b));
                    Some((
                        if f == "_&&_" {
                            Fast::And(ab)
                        } else {
                            Fast::Or(ab)
                        },
                        Ty::Bool,
                    ))
                }
                ("_?_:_", None, [c, a, b]) => {
                    let (c, tc) = compile(schema, c)?;
                    let ((a, ta), (b, tb)) = pair(schema, a, b)?;
                    (tc == Ty::Bool && ta == tb).then(|| (Fast::If(Box::new((c, a, b))), ta))
                }
                ("_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_", None, [a, b]) => {
                    let op = match f {
                        "_==_" => Cmp::Eq,
                        "_!=_" => Cmp::Ne,
                        "_<_" => Cmp::Lt,
                        "_<=_" => Cmp::Le,
                        "_>_" => Cmp::Gt,
                        _ => Cmp::Ge,
                    };
                    let ((a, ta), (b, tb)) = pair(schema, a, b)?;
                    let ok = ta == tb
                        && match ta {
                            Ty::Int | Ty::Double | Ty::Str => true,
                            Ty::Bool => matches!(op, Cmp::Eq | Cmp::Ne),
                            Ty::Strs => false,
                        };
                    ok.then(|| (Fast::Cmp(op, Box::new((a, b))), Ty::Bool))
                }
                ("@in", None, [a, b]) => {
                    let ((a, ta), (b, tb)) = pair(schema, a, b)?;
                    (ta == Ty::Str && tb == Ty::Strs)
                        .then(|| (Fast::In(Box::new((a, b))), Ty::Bool))
                }
                ("size", None, [a]) | ("size", Some(a), []) => {
                    let (a, ta) = compile(schema, a)?;
                    matches!(ta, Ty::Str | Ty::Strs).then(|| (Fast::Size(Box::new(a)), Ty::Int))
                }
                ("contains" | "startsWith" | "endsWith", Some(t), [a]) => {
                    let op = match f {
                        "contains" => StrOp::Contains,
                        "startsWith" => StrOp::StartsWith,
                        _ => StrOp::EndsWith,
                    };
                    let ((t, tt), (a, ta)) = pair(schema, t, a)?;
                    (tt == Ty::Str && ta == Ty::Str)
                        .then(|| (Fast::Str2(op, Box::new((t, a))), Ty::Bool))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The dotted path of a chain of field selections from a top-level name (`lead.budget.known`).
fn path(node: &IdedExpr) -> Option<String> {
    match &node.expr {
        Node::Ident(name) => Some(name.clone()),
        Node::Select(sel) if !sel.test => {
            let mut p = path(&sel.operand)?;
            p.push('.');
            p.push_str(&sel.field);
            Some(p)
        }
        _ => None,
    }
}

/// The schema's type of the field at `path`.
fn field_type<'a>(root: &'a Object, path: &str) -> Option<&'a Type> {
    let mut obj = root;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        let (ty, _) = obj.fields.get(segment)?;
        if segments.peek().is_none() {
            return Some(ty);
        }
        match ty {
            Type::Object(o) => obj = o,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::super::{Compiler, Fact, Lookup, Schema};
    use super::*;

    /// Facts with one field of each type, and `o.gone`, which they never answer.
    #[derive(Debug)]
    struct Sample {
        b: bool,
        i: i64,
        d: f64,
        s: String,
        l: Vec<String>,
    }

    impl Facts for Sample {
        fn plain(&self, path: &str) -> Option<Plain<'_>> {
            Some(match path {
                "o.b" => Plain::Bool(self.b),
                "o.i" => Plain::Int(self.i),
                "o.d" => Plain::Double(self.d),
                "o.s" => Plain::Str(self.s.as_str().into()),
                "o.l" => Plain::Strs(Strs::Owned(&self.l)),
                _ => return None,
            })
        }

        fn get(&self, path: &str) -> Option<Fact<'_>> {
            Some(Fact::Owned(self.plain(path)?.to_val()))
        }
    }

    fn compiler() -> Compiler {
        let o = Object::new("o")
            .field("b", Type::Bool, "")
            .field("gone", Type::Bool, "")
            .field("i", Type::Int, "")
            .field("d", Type::Double, "")
            .field("s", Type::String, "")
            .field("u", Type::String, "")
            .field("l", Type::List(Box::new(Type::String)), "");
        Compiler::new(Schema {
            root: Object::new("context").field("o", o.into_type(), "").field(
                "hours",
                Object::new("hours").into_type(),
                "",
            ),
            calendars: vec!["sales".into()],
            vocab: Vec::new(),
        })
    }

    fn one_of(items: &[&'static str]) -> BoxedStrategy<String> {
        proptest::sample::select(items.to_vec())
            .prop_map(str::to_string)
            .boxed()
    }

    fn int() -> BoxedStrategy<String> {
        prop_oneof![
            one_of(&["0", "1", "-2", "o.i"]),
            str_().prop_map(|s| format!("size({s})")),
            list().prop_map(|l| format!("{l}.size()")),
        ]
        .boxed()
    }

    fn double() -> BoxedStrategy<String> {
        one_of(&["0.0", "-0.0", "1.5", "o.d"])
    }

    fn str_() -> BoxedStrategy<String> {
        one_of(&["''", "'a'", "'ab'", "'éa'", "o.s", "o.u"])
    }

    fn list() -> BoxedStrategy<String> {
        one_of(&["[]", "['a', 'ab']", "o.l"])
    }

    /// Conditions of the subset, and some just outside it (mixed numbers, arithmetic, a
    /// comprehension), which CEL answers alone.
    fn condition() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            one_of(&["true", "false", "o.b", "o.gone", "hours.open('sales')"]),
            (int(), one_of(&["==", "!=", "<", "<=", ">", ">="]), int())
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            (double(), one_of(&["==", "<", ">="]), double())
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            (str_(), one_of(&["==", "!=", "<", ">="]), str_())
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            (str_(), list()).prop_map(|(a, l)| format!("{a} in {l}")),
            (
                str_(),
                one_of(&["contains", "startsWith", "endsWith"]),
                str_()
            )
                .prop_map(|(a, f, b)| format!("{a}.{f}({b})")),
            (int(), double()).prop_map(|(a, b)| format!("{a} < {b}")),
            int().prop_map(|a| format!("{a} + 1 > 0")),
            list().prop_map(|l| format!("{l}.exists(x, x == 'a')")),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|a| format!("!({a})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || ({b})")),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(c, a, b)| format!("({c}) ? ({a}) : ({b})")),
                (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) == ({b})")),
            ]
        })
    }

    fn sample() -> impl Strategy<Value = Sample> {
        (
            any::<bool>(),
            -3i64..3,
            proptest::sample::select(vec![0.0, -0.0, 1.5, -2.0, f64::NAN]),
            proptest::sample::select(vec!["", "a", "ab", "éa", "b"]),
            proptest::sample::subsequence(vec!["a", "b", "ab"], 0..=3),
        )
            .prop_map(|(b, i, d, s, l)| Sample {
                b,
                i,
                d,
                s: s.to_string(),
                l: l.into_iter().map(str::to_string).collect(),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Wherever the quicker evaluator answers, CEL gives the same answer; elsewhere CEL
        /// answers alone, so the two ways agree, errors included.
        #[test]
        fn the_quicker_evaluator_agrees_with_cel(source in condition(), facts in sample(), open in any::<bool>()) {
            let compiler = compiler();
            let e = compiler.compile(&source, Some(&Type::Bool)).expect("a checked condition");
            let lookup = Lookup::new(&compiler, facts);
            let mut calendars = BTreeMap::new();
            if open {
                let always = crate::hours::Calendar::always_open();
                calendars.insert("sales".to_string(), always);
            }
            let now = jiff::Timestamp::from_second(1_790_000_000).expect("instant");
            let sc = compiler.scope_over(&lookup, Arc::new(calendars), now).expect("scope");
            prop_assert_eq!(sc.eval_bool(&e), sc.eval_bool_cel(&e), "{}", source);
        }
    }

    #[test]
    fn the_subset_is_compiled_and_answers() {
        let compiler = compiler();
        let facts = Sample {
            b: true,
            i: 2,
            d: 1.5,
            s: "ab".into(),
            l: vec!["a".into()],
        };
        let lookup = Lookup::new(&compiler, facts);
        let now = jiff::Timestamp::from_second(1_790_000_000).expect("instant");
        let sc = compiler
            .scope_over(&lookup, Arc::new(BTreeMap::new()), now)
            .expect("scope");
        let env = sc.fast.as_ref().expect("a scope over facts");
        for (source, want) in [
            ("o.b && o.i >= 2 && !(o.d < 1.0)", Some(true)),
            (
                "'a' in o.l && size(o.s) == 2 && o.s.startsWith('a')",
                Some(true),
            ),
            ("o.s in ['x', 'y'] || hours.open('sales')", Some(false)),
            // No such field in the facts: CEL answers, with its error.
            ("o.gone || o.b", Some(true)),
            ("o.gone && o.b", None),
        ] {
            let e = compiler.compile(source, Some(&Type::Bool)).expect(source);
            let f = e.fast.as_ref().expect(source);
            assert_eq!(f.eval_bool(env), want, "{source}");
        }
        // Outside the subset.
        for source in ["o.i < 2.5", "o.l.exists(x, x == 'a')", "o.i + 1 > 0"] {
            let e = compiler.compile(source, Some(&Type::Bool)).expect(source);
            assert!(e.fast.is_none(), "{source}");
        }
    }
}
