"""SQLAlchemy 2 through psycopg 3 against hadr (tests/pg_compat.rs): ORM
create_all, inserts (SQLAlchemy's multi-row "insertmanyvalues" form), a
query, drop_all, and the inspector's tables, columns, primary and foreign
keys, indexes, unique constraints and comments (which create_all makes
with COMMENT ON). Prints one line
per step for the test to compare."""
import sys

from sqlalchemy import Column, ForeignKey, Integer, Numeric, String, create_engine, inspect, select
from sqlalchemy.orm import Session, declarative_base

engine = create_engine(sys.argv[1])
Base = declarative_base()


class Branch(Base):
    __tablename__ = "sa_branch"
    id = Column(Integer, primary_key=True)
    name = Column(String(30), nullable=False, unique=True)


class Account(Base):
    __tablename__ = "sa_account"
    __table_args__ = {"comment": "one per customer"}
    id = Column(Integer, primary_key=True)
    branch_id = Column(Integer, ForeignKey("sa_branch.id"), index=True, comment="where it is kept")
    balance = Column(Numeric(12, 2), default=0)


Base.metadata.create_all(engine)
with Session(engine) as s:
    b = Branch(name="north")
    s.add(b)
    s.flush()
    s.add_all([Account(branch_id=b.id, balance=10), Account(branch_id=b.id, balance=20)])
    s.commit()
    ids = [a.id for a in s.scalars(select(Account).order_by(Account.id))]
    rich = s.scalars(select(Account).where(Account.balance > 15)).one()
    print("ids", ids, "rich", rich.balance)
i = inspect(engine)
print("tables", sorted(i.get_table_names()))
print("columns", [(c["name"], str(c["type"]), c["nullable"]) for c in i.get_columns("sa_account")])
print("comments", i.get_table_comment("sa_account")["text"], [c.get("comment") for c in i.get_columns("sa_account")])
print("pk", i.get_pk_constraint("sa_account"))
fk = i.get_foreign_keys("sa_account")[0]
print("fk", fk["name"], fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
print("indexes", [(x["name"], x["unique"], x["column_names"]) for x in i.get_indexes("sa_account")])
print("unique", [(x["name"], x["column_names"]) for x in i.get_unique_constraints("sa_branch")])
Base.metadata.drop_all(engine)
print("after drop", sorted(inspect(engine).get_table_names()))
