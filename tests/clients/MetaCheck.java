// pgjdbc's DatabaseMetaData against hadr (tests/pg_compat.rs): prints what
// getTables, getColumns, getPrimaryKeys, getImportedKeys, getExportedKeys and getIndexInfo return for the schema the test made, one line
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
            System.out.println("tables " + rows(m.getTables(null, "public", "%", new String[] {"TABLE", "VIEW"}), "TABLE_NAME", "TABLE_TYPE", "REMARKS"));
            System.out.println("columns " + rows(m.getColumns(null, "public", "accounts", "%"), "COLUMN_NAME", "TYPE_NAME", "COLUMN_SIZE", "IS_NULLABLE", "COLUMN_DEF", "REMARKS"));
            System.out.println("pk " + rows(m.getPrimaryKeys(null, "public", "accounts"), "COLUMN_NAME", "KEY_SEQ", "PK_NAME"));
            System.out.println("imported " + rows(m.getImportedKeys(null, "public", "transfers"), "PKTABLE_NAME", "PKCOLUMN_NAME", "FKTABLE_NAME", "FKCOLUMN_NAME", "KEY_SEQ", "UPDATE_RULE", "DELETE_RULE", "FK_NAME", "PK_NAME"));
            System.out.println("exported " + rows(m.getExportedKeys(null, "public", "accounts"), "FKTABLE_NAME", "FKCOLUMN_NAME", "KEY_SEQ"));
            System.out.println("indexes " + rows(m.getIndexInfo(null, "public", "transfers", false, false), "INDEX_NAME", "NON_UNIQUE", "ORDINAL_POSITION", "COLUMN_NAME", "ASC_OR_DESC"));
        } catch (SQLException e) {
            System.out.println("error " + e.getSQLState() + " " + e.getMessage());
        }
    }
}
