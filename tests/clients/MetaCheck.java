// pgjdbc's DatabaseMetaData against hadr (tests/pg_compat.rs): prints what
// getTables, getColumns and getPrimaryKeys return for the schema the test made, one line
// each, or "error SQLSTATE message".
import java.sql.*;

public class MetaCheck {
    static String rows(ResultSet r, String... cols) throws SQLException {
        StringBuilder b = new StringBuilder();
        while (r.next()) {
            b.append("[");
            for (String c : cols) {
                b.append(r.getString(c)).append(c.equals(cols[cols.length - 1]) ? "" : " ");
            }
            b.append("]");
        }
        return b.toString();
    }

    public static void main(String[] a) {
        try (Connection c = DriverManager.getConnection(a[0], "test", "")) {
            DatabaseMetaData m = c.getMetaData();
            System.out.println("tables " + rows(m.getTables(null, "public", "%", new String[] {"TABLE", "VIEW"}), "TABLE_NAME", "TABLE_TYPE"));
            System.out.println("columns " + rows(m.getColumns(null, "public", "accounts", "%"), "COLUMN_NAME", "TYPE_NAME", "COLUMN_SIZE", "IS_NULLABLE", "COLUMN_DEF"));
            System.out.println("pk " + rows(m.getPrimaryKeys(null, "public", "accounts"), "COLUMN_NAME", "KEY_SEQ", "PK_NAME"));
        } catch (SQLException e) {
            System.out.println("error " + e.getSQLState() + " " + e.getMessage());
        }
    }
}
